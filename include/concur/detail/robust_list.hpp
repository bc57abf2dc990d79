// concur/detail/robust_list.hpp
//
// Linux's robust futex list, as glibc keeps it for every thread: the way a lock held by a
// process that dies is marked for the next acquirer. Each thread registers one list head with
// the kernel (set_robust_list(2), done by glibc when the thread starts); when the thread exits,
// however it exits (SIGKILL included), the kernel walks the list and, for each lock word whose
// owner field holds the thread's id, sets FUTEX_OWNER_DIED, clears the owner, and wakes one
// waiter. `list_op_pending` names the one lock being added or removed, so that a death between
// the lock word's change and the list's change is covered too.
//
// glibc owns the list: its robust pthread mutexes are linked into it. concur's process-shared
// locks are linked into the same list in the same form, so that both live side by side: each
// RobustSlot is laid out as the front of a pthread_mutex_t (the lock word where glibc keeps
// __data.__lock, the links where it keeps __data.__list), which is the layout whose offset
// glibc registered (futex_offset). The links are only touched by the thread whose list it is,
// as glibc's are. Where the list is doubly linked (__PTHREAD_MUTEX_HAVE_PREV: x86-64, arm64 and
// most 64-bit targets), insertion and removal keep every link glibc reads (see robust_link()).
//
// Only with glibc on Linux, where the list is doubly linked. Elsewhere (32-bit x86's singly
// linked list, a kernel or an emulator without the list: QEMU's user mode refuses
// get_robust_list) robust_list_available() is false, and a RobustSlot is a bare word whose
// list operations do nothing: nothing may rely on them, and concur::mp refuses to build a lock
// there (ENOSYS).

#ifndef CONCUR_DETAIL_ROBUST_LIST_HPP
#define CONCUR_DETAIL_ROBUST_LIST_HPP

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>

#include "concur/detail/config.hpp"

// The C library's headers above define __GLIBC__: the test below must come after them, or a
// translation unit that includes this header first would build the other RobustSlot.
#if defined(__linux__) && defined(__GLIBC__)
#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>
#define CONCUR_ROBUST_LIST 1
#else
#define CONCUR_ROBUST_LIST 0
#endif

namespace concur::detail {

#if CONCUR_ROBUST_LIST && __PTHREAD_MUTEX_HAVE_PREV

// RobustSlot
//
// A lock word and its list links, in the layout of a pthread_mutex_t (40 bytes on x86-64).
// Lives in shared memory; the links hold addresses in the owner's address space and mean
// something only while that thread holds the word.
class RobustSlot {
  static constexpr std::size_t word_offset = offsetof(pthread_mutex_t, __data.__lock);
  static constexpr std::size_t list_offset = offsetof(pthread_mutex_t, __data.__list);

 public:
  RobustSlot() noexcept {
    new (bytes_ + word_offset) std::atomic<std::uint32_t>(0);
    links() = __pthread_list_t{nullptr, nullptr};
  }

  std::atomic<std::uint32_t>& word() noexcept {
    return *std::launder(reinterpret_cast<std::atomic<std::uint32_t>*>(bytes_ + word_offset));
  }

  // The address the kernel's list holds for this slot.
  robust_list* entry() noexcept { return reinterpret_cast<robust_list*>(&links().__next); }

  // The futex_offset this layout needs: where the word lies from the entry.
  static constexpr long futex_offset = static_cast<long>(word_offset) -
                                       static_cast<long>(list_offset) -
                                       static_cast<long>(offsetof(__pthread_list_t, __next));

  __pthread_list_t& links() noexcept {
    return *std::launder(reinterpret_cast<__pthread_list_t*>(bytes_ + list_offset));
  }

 private:
  static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(int),
                "the kernel's lock word is 32 bits");

  alignas(pthread_mutex_t) unsigned char bytes_[sizeof(pthread_mutex_t)];
};

// The kernel's list head, as the rest of concur names it.
using RobustHead = ::robust_list_head;

// The calling thread's list head, as registered with the kernel; nullptr when there is none.
// The same in a fork()ed child (its thread keeps its parent thread's control block).
// A plain pointer filled on first use: cheaper than a thread_local with an initializer, which
// every use would check through a call.
inline thread_local robust_list_head* cached_robust_head = nullptr;

// The first use in a thread: asks the kernel.
CONCUR_NOINLINE inline robust_list_head* find_robust_head() noexcept {
  robust_list_head* found = nullptr;
  std::size_t length = 0;
  if (::syscall(SYS_get_robust_list, 0, &found, &length) == 0 &&
      length == sizeof(robust_list_head)) {
    cached_robust_head = found;
  }
  return cached_robust_head;
}

CONCUR_ALWAYS_INLINE robust_list_head* robust_head() noexcept {
  robust_list_head* const head = cached_robust_head;
  return CONCUR_LIKELY(head != nullptr) ? head : find_robust_head();
}

// Whether locks of this layout can be linked into the calling thread's list.
inline bool robust_list_available() noexcept {
  robust_list_head* head = robust_head();
  return head != nullptr && head->futex_offset == RobustSlot::futex_offset;
}

// Before a lock word is changed to or from the caller's id: names the slot as the operation in
// progress. And after: nothing in progress.
CONCUR_ALWAYS_INLINE void robust_pending(robust_list_head* head, RobustSlot* slot) noexcept {
  head->list_op_pending = slot != nullptr ? slot->entry() : nullptr;
  std::atomic_signal_fence(std::memory_order_seq_cst);  // the kernel reads it at the thread's end
}

// Whether the operation in progress is the one on `slot`.
CONCUR_ALWAYS_INLINE bool robust_pending_is(const robust_list_head* head,
                                            RobustSlot& slot) noexcept {
  return head->list_op_pending == slot.entry();
}

// In a fork()ed child, whose list glibc has emptied (it holds nothing): nothing in progress
// either. A thread that forks while it holds a lock may have left that lock's slot as its
// operation in progress (robust_lock.hpp); the child's copy of it names a lock that the child
// does not hold, in memory the child may unmap.
inline void robust_forget_pending_in_child() noexcept {
  if (cached_robust_head != nullptr) robust_pending(cached_robust_head, nullptr);
}

// An entry's address without the tag glibc sets in its low bit for a priority-inheritance
// mutex (the kernel reads the tag; the links themselves are at the untagged address).
inline char* untagged(const void* entry) noexcept {
  return reinterpret_cast<char*>(reinterpret_cast<std::uintptr_t>(entry) & ~std::uintptr_t{1});
}

// How concur's entries keep glibc's links right. The list is circular through the head; each
// `next` points at the next entry's __next field (the head's own `list` field after the last
// entry), and glibc's own steps rely on one thing more: a glibc mutex's __prev points at the
// entry before it (the head for the first), since its DEQUEUE_MUTEX writes through it. So
// whatever concur links or unlinks, the entry after it gets the right __prev. concur reads no
// __prev itself: the entry before a slot is the head for the first entry, which is nearly
// always the case (a thread holds one lock at a time), and otherwise found by walking the list,
// which holds only what the thread holds. That saves glibc's other stores (the slot's own
// __prev, clearing the links on removal: the kernel never reads an entry off the list).

// The list node of an entry address (an entry is the address of a node's __next field).
inline __pthread_list_t* list_node(const void* entry) noexcept {
  return reinterpret_cast<__pthread_list_t*>(untagged(entry) - offsetof(__pthread_list_t, __next));
}

// Links `slot` (whose word the caller has just taken) at the front of the caller's list.
CONCUR_ALWAYS_INLINE void robust_link(robust_list_head* head, RobustSlot& slot) noexcept {
  robust_list* const first = head->list.next;
  if (untagged(first) != reinterpret_cast<char*>(&head->list)) {
    list_node(first)->__prev = reinterpret_cast<__pthread_list_t*>(slot.entry());
  }
  slot.links().__next = reinterpret_cast<__pthread_list_t*>(first);
  std::atomic_signal_fence(std::memory_order_seq_cst);  // the entry is whole before it is listed
  head->list.next = slot.entry();
}

// Sets the `next` field that points at `slot` to the entry after it, and gives that entry its
// new __prev.
CONCUR_ALWAYS_INLINE void robust_bypass(robust_list_head* head, robust_list** before,
                                        RobustSlot& slot) noexcept {
  robust_list* const next = reinterpret_cast<robust_list*>(slot.links().__next);
  if (untagged(next) != reinterpret_cast<char*>(&head->list)) {
    list_node(next)->__prev = before == &head->list.next
                                  ? reinterpret_cast<__pthread_list_t*>(&head->list)
                                  : reinterpret_cast<__pthread_list_t*>(before);
  }
  *before = next;
  std::atomic_signal_fence(std::memory_order_seq_cst);  // off the list before the word changes
}

// The rest of robust_unlink(), for a slot that is not first: walks to the entry before it.
CONCUR_NOINLINE inline void robust_unlink_later(robust_list_head* head, RobustSlot& slot) noexcept {
  robust_list** before = &head->list.next;  // the `next` field that points at the slot
  while (untagged(*before) != reinterpret_cast<char*>(slot.entry())) {
    if (untagged(*before) == reinterpret_cast<char*>(&head->list)) return;  // not listed
    before = &reinterpret_cast<robust_list*>(untagged(*before))->next;
  }
  robust_bypass(head, before, slot);
}

// Unlinks `slot` (whose word the caller still holds) from the caller's list.
CONCUR_ALWAYS_INLINE void robust_unlink(robust_list_head* head, RobustSlot& slot) noexcept {
  if (CONCUR_LIKELY(head->list.next == slot.entry())) {
    robust_bypass(head, &head->list.next, slot);
  } else {
    robust_unlink_later(head, slot);
  }
}

#else

struct RobustHead;

class RobustSlot {
 public:
  std::atomic<std::uint32_t>& word() noexcept { return word_; }

 private:
  std::atomic<std::uint32_t> word_{0};
};

inline RobustHead* robust_head() noexcept {
  return nullptr;
}
inline bool robust_pending_is(const RobustHead*, RobustSlot&) noexcept {
  return true;
}
inline void robust_forget_pending_in_child() noexcept {}
inline bool robust_list_available() noexcept {
  return false;
}
inline void robust_pending(RobustHead*, RobustSlot*) noexcept {}
inline void robust_link(RobustHead*, RobustSlot&) noexcept {}
inline void robust_unlink(RobustHead*, RobustSlot&) noexcept {}

#endif

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_ROBUST_LIST_HPP
