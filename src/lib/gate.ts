// A readers-writer gate: any number of shared holders, or one exclusive holder. Waiters are
// served in arrival order, so a waiting exclusive holder is not starved by a stream of shared
// ones. The DSL uses one per dataset: data operations pass shared, rollback and destroy pass
// exclusive, so no write is in flight while a dataset's object set is replaced.

interface Waiter {
  readonly exclusive: boolean;
  readonly wake: () => void;
}

export class Gate {
  private shared = 0;
  private exclusive = false;
  private readonly waiters: Waiter[] = [];

  /** Runs `fn` with a shared hold. */
  withShared<T>(fn: () => Promise<T>): Promise<T> {
    return this.run(false, fn);
  }

  /** Runs `fn` alone. */
  withExclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.run(true, fn);
  }

  private async run<T>(exclusive: boolean, fn: () => Promise<T>): Promise<T> {
    if (!this.canEnter(exclusive) || this.waiters.length > 0) {
      await new Promise<void>((wake) => this.waiters.push({ exclusive, wake }));
    } else {
      this.enter(exclusive);
    }
    try {
      return await fn();
    } finally {
      if (exclusive) this.exclusive = false;
      else this.shared--;
      this.admit();
    }
  }

  private canEnter(exclusive: boolean): boolean {
    return !this.exclusive && (!exclusive || this.shared === 0);
  }

  private enter(exclusive: boolean): void {
    if (exclusive) this.exclusive = true;
    else this.shared++;
  }

  private admit(): void {
    for (let next = this.waiters[0]; next !== undefined && this.canEnter(next.exclusive); next = this.waiters[0]) {
      this.waiters.shift();
      this.enter(next.exclusive);
      next.wake();
    }
  }
}
