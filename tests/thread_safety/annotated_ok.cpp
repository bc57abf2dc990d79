// Compiles cleanly under clang -Wthread-safety -Werror: every access to guarded data holds its
// lock, through Guard, through acquire()/release() pairs, or in a function that requires it.
#include <concur/lock.hpp>
#include <concur/rlock.hpp>

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

int main() {
  Account account;
  account.deposit(100);
  (void)account.try_withdraw(10);
  account.month_end();
  Ledger ledger;
  ledger.record();
  return 0;
}
