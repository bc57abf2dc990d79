// Must NOT compile under clang -Wthread-safety -Werror: balance is read and written without
// holding the lock that guards it. ctest expects this compilation to fail.
#include <concur/lock.hpp>

struct Account {
  concur::Lock lock;
  long balance CONCUR_GUARDED_BY(lock) = 0;

  void deposit(long amount) { balance += amount; }  // no lock held
};

int main() {
  Account account;
  account.deposit(1);
  return 0;
}
