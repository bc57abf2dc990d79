// Compiles cleanly under clang -Wthread-safety -Werror: every access to guarded data holds its
// lock, through Guard, through acquire()/release() pairs, or in a function that requires it.
// It includes every public header and uses the templates that wait on a lock (Condition over
// each lock type, the queues), so that concur's own code is checked under the analysis too.
#include <concur/concur.hpp>

#include <chrono>

struct Account {
  concur::Lock lock;
  long balance CONCUR_GUARDED_BY(lock) = 0;

  void deposit(long amount) {
    concur::Guard hold(lock);
    balance += amount;
  }

  bool try_withdraw(long amount) {
    if (!lock.acquire(false)) return false;
    const bool enough = balance >= amount;
    if (enough) balance -= amount;
    lock.release();
    return enough;
  }

  void add_interest() CONCUR_REQUIRES(lock) { balance += balance / 100; }

  void month_end() {
    lock.acquire();
    add_interest();
    lock.release();
  }
};

struct Ledger {
  concur::RLock lock;
  int entries CONCUR_GUARDED_BY(lock) = 0;

  void record() {
    concur::Guard hold(lock);
    ++entries;
  }
};

struct Mailbox {
  concur::Lock lock;
  concur::Condition<concur::Lock> changed{lock};
  int letters CONCUR_GUARDED_BY(lock) = 0;

  void post() {
    concur::Guard hold(lock);
    ++letters;
    changed.notify();
  }

  bool wait_for_letter() {
    concur::Guard hold(lock);
    while (letters == 0) {
      if (!changed.wait(std::chrono::milliseconds(1))) return false;
    }
    --letters;
    return true;
  }
};

struct Inbox {
  concur::Condition<> changed;  // owns an RLock
  int count CONCUR_GUARDED_BY(changed) = 0;

  void add() {
    concur::Guard hold(changed);
    ++count;
    changed.notify_all();
  }

  bool wait_until_any() {
    concur::Guard hold(changed);
    return changed.wait_for([this]() CONCUR_REQUIRES(changed) { return count > 0; },
                            std::chrono::milliseconds(1));
  }
};

int main() {
  Mailbox mailbox;
  mailbox.post();
  (void)mailbox.wait_for_letter();
  Inbox inbox;
  inbox.add();
  (void)inbox.wait_until_any();
  concur::Queue<int> queue(4);
  queue.put(1);
  (void)queue.get();
  concur::SimpleQueue<int> simple;
  simple.put(2);
  (void)simple.get();

  Account account;
  account.deposit(100);
  (void)account.try_withdraw(10);
  account.month_end();
  Ledger ledger;
  ledger.record();
  return 0;
}
