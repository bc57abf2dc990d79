// concur/detail/local_registry.hpp
//
// The machinery behind concur::local<T>: which value belongs to which (thread, local object)
// pair, and who destroys it.
//
//   LocalSlots   process-wide, never destroyed. Each live local object has a slot (an index,
//                reused once the local is gone) whose list holds every thread's value, under
//                the slot's own mutex (for_each walks it). A registry mutex guards slot
//                allocation and the set of threads' tables.
//   per thread   a table on the heap (LocalThreadTable): an array of value pointers indexed by
//                slot, which two plain thread_locals point at, so that finding this thread's
//                value is two thread-local loads, a bound check and one more load. A pthread key
//                owns the table and its destructor destroys the thread's values at thread exit.
//
// Thread exit never touches another thread-local object through a pointer, and no thread_local
// has a destructor: where thread-locals are emulated (MinGW GCC's emutls), the storage of every
// thread_local is freed by a pthread key destructor whose order among the others is unspecified,
// and C++ thread_local destructors run after it, so an exit path that wrote through pointers to
// thread-locals (the old owner object, itself a thread_local, and the inline array other threads
// cleared) corrupted the heap (issue 14, item 5). Everything the exit path or another thread
// writes lives in the heap table, reached from the key's value (the destructor's argument); the
// two thread_locals are only read by their own thread and reset by the exit path (a write to an
// emulated thread_local after its storage is gone allocates it afresh, which is harmless).
//
// Each value is destroyed exactly once, by its thread's exit or by its local's destruction,
// whichever comes first: both take the registry mutex; a local's destruction clears its index
// in every thread's array (so a later local reusing the index starts from nothing) and bumps
// its slot's generation, and a thread's exit takes back only what its array still holds, then
// unlinks each value from its slot unless the slot's generation changed meanwhile (the local's
// destruction took the value). Values are destroyed after the mutexes are released, so a
// destructor may itself use locals.
//
// Lock order: the registry mutex, then a slot's mutex. A slot's mutex is never held while the
// registry mutex is taken, nor while user code runs: for_each() marks the value it visits
// (LocalNode::visits) and calls the callback with no mutex held, and a thread that exits while
// its value is visited waits, holding no mutex, on the slot's condition variable until the visit
// ends. (Holding the slot's mutex across the callback deadlocked against an exiting thread,
// which holds the registry mutex and wants the slot's, when the callback took the registry mutex
// by using another local: issue 13, item 4.)

#ifndef CONCUR_DETAIL_LOCAL_REGISTRY_HPP
#define CONCUR_DETAIL_LOCAL_REGISTRY_HPP

#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <new>
#include <vector>

#include "concur/detail/at_fork.hpp"
#include "concur/detail/config.hpp"
#include "concur/detail/schedule.hpp"

namespace concur::detail {

// One thread's value of one local, linked into its slot's list.
struct LocalNode {
  virtual ~LocalNode() = default;
  LocalNode* prev = nullptr;  // guarded by the slot's mutex, as are the rest
  LocalNode* next = nullptr;
  int visits = 0;        // for_each() calls on this value under way
  bool awaited = false;  // the owning thread waits for the visits to end
};

// The calling thread's values, indexed by slot, read directly by local<T>::get(): an array in
// the thread's heap table (entries atomic because another thread clears an entry when its local
// is destroyed), and its length. Only the owning thread reads these two; they are trivially
// destructible, so no thread-exit code runs for them.
inline constexpr std::size_t local_initial_slots = 64;
inline thread_local std::atomic<void*>* local_values = nullptr;
inline thread_local std::size_t local_value_count = 0;

class LocalThreadTable;

// Set once LocalSlots exists (a local was made), so that a thread's exit asks for its table
// only then.
inline std::atomic<bool> local_slots_exist{false};

class LocalSlots {
 public:
  struct Slot {
    std::mutex mutex;
    std::condition_variable visit_ended;  // with mutex: a node's last visit ended
    bool open = false;                    // guarded by mutex: a local object uses the slot
    std::uint64_t generation = 0;         // guarded by mutex and the registry's: bumped by close
    LocalNode* head = nullptr;            // guarded by mutex
  };

  static LocalSlots& instance() {
    static LocalSlots* const slots = new LocalSlots();
    return *slots;
  }

  std::mutex& mutex() noexcept { return mutex_; }

  // The key whose value is the calling thread's table (null before its first value); its
  // destructor destroys the thread's values at thread exit.
  pthread_key_t table_key() const noexcept { return table_key_; }

  // A slot for a new local object.
  std::size_t open();

  // The local of slot `index` is going: clears its entry in every thread's table, frees the
  // slot, and returns its values, unlinked (the caller destroys them).
  LocalNode* close(std::size_t index);

  Slot& slot(std::size_t index) {
    std::lock_guard<std::mutex> hold(mutex_);
    return slots_[index];  // a deque never moves its elements
  }

  // Links a new value into its slot; false (nothing linked) when the local is gone.
  static bool link(Slot& s, LocalNode* node) {
    std::lock_guard<std::mutex> hold(s.mutex);
    if (!s.open) return false;
    node->prev = nullptr;
    node->next = s.head;
    if (s.head != nullptr) s.head->prev = node;
    s.head = node;
    return true;
  }

  // The exiting owner of `node`, holding no mutex: waits until no for_each() visits the node,
  // then unlinks it. False (the node is not touched) when the local closed after `generation`
  // was read: its destruction took the node, and destroys it.
  static bool unlink_unvisited(Slot& s, std::uint64_t generation, LocalNode* node) {
    std::unique_lock<std::mutex> hold(s.mutex);
    for (;;) {
      if (s.generation != generation) return false;
      if (node->visits == 0) break;
      node->awaited = true;
      CONCUR_SCHEDULE_POINT("local.exit.before_waiting_for_visit");
      s.visit_ended.wait(hold);
    }
    (node->prev != nullptr ? node->prev->next : s.head) = node->next;
    if (node->next != nullptr) node->next->prev = node->prev;
    return true;
  }

  // for_each(): calls `visit(node)` for every node of the slot, without holding its mutex while
  // `visit` runs. The node visited stays linked (its owner waits in unlink_unvisited), so its
  // `next` is read after the visit; values linked meanwhile (at the head) are not visited.
  template <class Visit>
  static void visit_each(Slot& s, Visit&& visit) {
    std::unique_lock<std::mutex> hold(s.mutex);
    for (LocalNode* node = s.head; node != nullptr;) {
      ++node->visits;
      hold.unlock();
      CONCUR_SCHEDULE_POINT("local.for_each.before_callback");
      try {
        visit(node);
      } catch (...) {
        hold.lock();
        end_visit(s, node);
        throw;
      }
      hold.lock();
      CONCUR_SCHEDULE_POINT("local.for_each.after_callback");
      LocalNode* next = node->next;
      end_visit(s, node);
      node = next;
    }
  }

  // With mutex() held: the tables of threads that have values.
  std::vector<LocalThreadTable*>& tables() noexcept { return tables_; }
  std::deque<Slot>& slots() noexcept { return slots_; }

 private:
  // With the slot's mutex held.
  static void end_visit(Slot& s, LocalNode* node) noexcept {
    if (--node->visits == 0 && node->awaited) {
      node->awaited = false;
      s.visit_ended.notify_all();
    }
  }

  LocalSlots();

  pthread_key_t table_key_{};
  std::mutex mutex_;
  std::deque<Slot> slots_;                 // guarded by mutex_ (each slot's list by its mutex)
  std::vector<std::size_t> free_;          // guarded by mutex_
  std::vector<LocalThreadTable*> tables_;  // guarded by mutex_
};

// The locals whose value the calling thread is building right now, innermost first: a value
// whose construction uses its own local would otherwise build itself again without end (issue
// 13, item 7). One node per nested build, on the builder's stack.
class LocalBuilding {
 public:
  // Marks `owner` (a local object) as being built on this thread, until destroyed.
  explicit LocalBuilding(const void* owner) noexcept : owner_(owner), outer_(innermost) {
    innermost = this;
  }
  ~LocalBuilding() { innermost = outer_; }
  LocalBuilding(const LocalBuilding&) = delete;
  LocalBuilding& operator=(const LocalBuilding&) = delete;

  // Whether the calling thread is building a value of `owner`.
  static bool underway(const void* owner) noexcept {
    for (const LocalBuilding* at = innermost; at != nullptr; at = at->outer_) {
      if (at->owner_ == owner) return true;
    }
    return false;
  }

 private:
  static inline thread_local LocalBuilding* innermost = nullptr;
  const void* const owner_;
  LocalBuilding* const outer_;
};

// The calling thread's values: owns the array behind local_values, and the nodes, and destroys
// the values when the thread exits. Allocated on the thread's first value and owned by the key
// LocalSlots::table_key(), whose destructor (thread_exit) runs at thread exit; concur::Thread's
// own exit path runs it first (exit_current()), so that a join() that returns finds the values
// destroyed. A local used after that (from a later destructor) gets a fresh table, which the
// key's next round of destructors destroys, or, if there is none, its local's destruction.
class LocalThreadTable {
 public:
  // The calling thread's table, created now if it has none.
  static LocalThreadTable& mine() {
    const pthread_key_t key = LocalSlots::instance().table_key();
    if (void* table = pthread_getspecific(key)) return *static_cast<LocalThreadTable*>(table);
    auto table = std::make_unique<LocalThreadTable>();
    if (const int rc = pthread_setspecific(key, table.get()); rc != 0) throw std::bad_alloc();
    return *table.release();
  }

  // The calling thread exits: destroys its values now, if it has any. Called by the thread
  // registry before it marks the thread ended, and by the key's destructor.
  static void exit_current() noexcept {
    if (!local_slots_exist.load(std::memory_order_acquire)) return;  // no local was ever made
    const pthread_key_t key = LocalSlots::instance().table_key();
    if (void* table = pthread_getspecific(key)) {
      pthread_setspecific(key, nullptr);
      thread_exit(table);
    }
  }

  // Records this thread's value for slot `index`. With the registry mutex held.
  void record(std::size_t index, LocalNode* node, void* value) {
    if (index >= nodes_.size()) grow(index + 1);
    nodes_[index] = node;
    values_[index].store(value, std::memory_order_relaxed);
    if (!listed_) {
      LocalSlots::instance().tables().push_back(this);
      listed_ = true;
    }
  }

  // The local of slot `index` is gone. With the registry mutex held.
  void forget(std::size_t index) noexcept {
    if (index >= nodes_.size()) return;
    nodes_[index] = nullptr;
    values_[index].store(nullptr, std::memory_order_relaxed);
  }

  LocalThreadTable() = default;
  LocalThreadTable(const LocalThreadTable&) = delete;
  LocalThreadTable& operator=(const LocalThreadTable&) = delete;

  // The key's destructor, with the exiting thread's table: under the registry mutex, leaves the
  // set of tables (no local's destruction touches this table after that) and takes its values
  // with their slots' generations; then, with no mutex held, unlinks each from its slot (waiting
  // for a for_each() visiting it) and destroys it, unless its local closed meanwhile and took
  // it. It touches no thread-local object but the two it resets.
  static void thread_exit(void* raw) noexcept {
    if (raw == nullptr) return;  // winpthreads may call a key's destructor with its null value
    const std::unique_ptr<LocalThreadTable> table(static_cast<LocalThreadTable*>(raw));
    struct Mine {
      LocalSlots::Slot* slot;
      std::uint64_t generation;
      LocalNode* node;
    };
    std::vector<Mine> mine;
    LocalSlots& slots = LocalSlots::instance();
    {
      std::lock_guard<std::mutex> hold(slots.mutex());
      auto& tables = slots.tables();
      for (std::size_t i = 0; i < tables.size(); ++i) {
        if (tables[i] == table.get()) {
          tables[i] = tables.back();
          tables.pop_back();
          break;
        }
      }
      for (std::size_t index = 0; index < table->nodes_.size(); ++index) {
        if (table->nodes_[index] == nullptr) continue;
        LocalSlots::Slot& s = slots.slots()[index];
        try {
          mine.push_back(Mine{&s, s.generation, table->nodes_[index]});
        } catch (...) {
          continue;  // out of memory: the value is left to its local's destruction
        }
        table->nodes_[index] = nullptr;
      }
    }
    local_values = nullptr;
    local_value_count = 0;
    CONCUR_SCHEDULE_POINT("local.exit.after_leaving_registry");
    for (const Mine& m : mine) {
      if (LocalSlots::unlink_unvisited(*m.slot, m.generation, m.node)) delete m.node;
    }
  }

 private:
  void grow(std::size_t count) {
    nodes_.resize(count, nullptr);
    if (count <= capacity_) return;
    std::size_t capacity = capacity_ == 0 ? local_initial_slots : capacity_;
    while (capacity < count) capacity *= 2;
    auto values = std::make_unique<std::atomic<void*>[]>(capacity);
    for (std::size_t i = 0; i < capacity_; ++i) {
      values[i].store(values_[i].load(std::memory_order_relaxed), std::memory_order_relaxed);
    }
    // The old array may still be read by this very thread's get() only; it is this thread that
    // grows it, between two get() calls, so replacing it is safe.
    values_ = std::move(values);
    capacity_ = capacity;
    local_values = values_.get();
    local_value_count = capacity;
  }

  std::vector<LocalNode*> nodes_;                 // guarded by the registry mutex
  std::unique_ptr<std::atomic<void*>[]> values_;  // entries cleared by other threads, atomically
  std::size_t capacity_ = 0;
  bool listed_ = false;
};

inline LocalSlots::LocalSlots() {
  if (const int rc = pthread_key_create(&table_key_, &LocalThreadTable::thread_exit); rc != 0) {
    throw std::bad_alloc();  // out of keys: the first local's construction fails
  }
  local_slots_exist.store(true, std::memory_order_release);
  // A thread that vanished in fork() may have held a mutex, or been visiting a value.
  at_fork(nullptr, nullptr, [] {
    LocalSlots& self = instance();
    new (&self.mutex_) std::mutex();
    for (Slot& s : self.slots_) {
      new (&s.mutex) std::mutex();
      new (&s.visit_ended) std::condition_variable();
      for (LocalNode* node = s.head; node != nullptr; node = node->next) {
        node->visits = 0;
        node->awaited = false;
      }
    }
  });
}

inline std::size_t LocalSlots::open() {
  std::lock_guard<std::mutex> hold(mutex_);
  std::size_t index;
  if (!free_.empty()) {
    index = free_.back();
    free_.pop_back();
  } else {
    index = slots_.size();
    slots_.emplace_back();
  }
  std::lock_guard<std::mutex> hold_slot(slots_[index].mutex);
  slots_[index].open = true;
  return index;
}

inline LocalNode* LocalSlots::close(std::size_t index) {
  std::lock_guard<std::mutex> hold(mutex_);
  for (LocalThreadTable* table : tables_) table->forget(index);
  Slot& s = slots_[index];
  LocalNode* nodes;
  {
    std::lock_guard<std::mutex> hold_slot(s.mutex);
    s.open = false;
    ++s.generation;  // an exiting thread that took a value of this slot leaves it to us
    nodes = s.head;
    s.head = nullptr;
  }
  s.visit_ended.notify_all();  // such a thread may wait for a visit: it now finds the change
  free_.push_back(index);
  return nodes;
}

}  // namespace concur::detail

#endif  // CONCUR_DETAIL_LOCAL_REGISTRY_HPP
