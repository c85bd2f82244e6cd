/**
 * A loop's wake-up call: `wait(ms)` sleeps until `wake()` or the timeout.
 * A wake with nobody waiting is remembered, so the next `wait` returns at
 * once (after the event loop had its turn: a loop woken over and over still
 * lets timers and I/O run). Several waits may overlap (a wait raced against
 * other promises and left behind); `wake()` ends them all.
 */
export class Waker {
  readonly #waiters = new Set<() => void>();
  #pending = false;

  wake(): void {
    if (this.#waiters.size === 0) {
      this.#pending = true;
      return;
    }
    // Deleting the current entry while iterating a Set is safe.
    for (const w of this.#waiters) w();
  }

  wait(ms: number): Promise<void> {
    if (this.#pending) {
      this.#pending = false;
      return new Promise((resolve) => setImmediate(resolve));
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.#waiters.delete(done);
        resolve();
      };
      const t = setTimeout(done, Math.max(1, ms));
      this.#waiters.add(done);
    });
  }
}
