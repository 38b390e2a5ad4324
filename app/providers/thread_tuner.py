"""How many threads a llama.cpp batch step gets: chosen per step size by measured step times.

Used by the parallel slots (:mod:`app.providers.llama_slots`) for each ``llama_decode`` of more
than one token.
"""

from __future__ import annotations

TUNE_PROMPT_TOKENS = 64
"""Tokens in a step from which llama.cpp's own choice would be the batch thread count (a prompt
chunk); below it, several members decoding, the decode count."""

TUNE_EXPLORE_FIRST = 16
"""Batch steps of one size class before the thread count not in use is tried again; the wait
doubles each time that try loses (up to :data:`TUNE_EXPLORE_MOST`) and starts over when it wins."""

TUNE_EXPLORE_MOST = 2048

TUNE_SMOOTHING = 0.25
"""Weight of the newest step time in a thread count's running average."""

TUNE_TRY_COST = 0.05
"""The most that losing tries may cost, as a share of the batch steps' time: after a try that
lost by ``x`` seconds, no class tries again for ``x / TUNE_TRY_COST`` seconds of batch steps."""


class ThreadTuner:
    """Picks the thread count of a batch step of several tokens by measured step times.

    One sequence's decode is bound by reading the weights, so llama.cpp gives it fewer threads
    (half the cores by default) and prompts more (all of them); several members decoding
    together share that read and their matrix products become compute, where more threads
    help (measured on 2 idle cores, ~27M f32 model: 4 members 2.0 x one member's tokens/s on
    one thread, 3.0 x on two). But ggml's threads wait for each other at every operation, so
    on a machine whose other cores are busy a step on more threads can take several times as
    long (measured under load: seconds per token 6 x, slowest steps 300 ms). Neither choice is
    right everywhere: per size class of the step (2-3, 4-7, 8-15 ... tokens) a running average
    of seconds per token for each thread count; the faster one is used, and the other is tried
    again after :data:`TUNE_EXPLORE_FIRST` steps, twice as many each time it loses, and at
    once when the count in use gets slower than the other's last measure (the machine got
    busy). A try that loses can stall for hundreds of times a step's time on a busy machine, so
    after one no class tries for long enough that tries cost at most :data:`TUNE_TRY_COST` of
    the time (measured, tiny model, 4 clients on 2 cores with the other core busy: without
    that bound the tries' stalls made 4 clients 0.3 x one client's tokens/s). A class not
    tried yet follows the latest try of any class (a busy machine slows every size alike: the
    frequent decode steps find it out for the rare long prompt chunks), and before any try
    llama.cpp's own choice (:meth:`default`).
    """

    def __init__(self, decode_threads: int, batch_threads: int) -> None:
        self.decode_threads, self.batch_threads = decode_threads, batch_threads
        self.seconds: dict[tuple[int, int], float] = {}
        self.best: dict[int, int] = {}
        self.wait: dict[int, int] = {}
        self.until: dict[int, int] = {}
        self.verdict: int | None = None
        """The thread count that won the latest try, in any size class."""
        self.elapsed = 0.0
        """Seconds of the batch steps recorded so far."""
        self.quiet_until = 0.0
        """No try of more threads before :attr:`elapsed` reaches this (the last losing try's
        cost, amortised)."""

    @staticmethod
    def size_class(tokens: int) -> int:
        """2-3 -> 1, 4-7 -> 2, 8-15 -> 3 ..."""
        return max(1, tokens.bit_length() - 1)

    def default(self, tokens: int) -> int:
        """llama.cpp's own choice, used until a measurement says otherwise: the batch count from
        a prompt-sized step (:data:`TUNE_PROMPT_TOKENS`), else the decode count."""
        return self.batch_threads if tokens >= TUNE_PROMPT_TOKENS else self.decode_threads

    def fallback(self, tokens: int) -> int:
        """The count for a size class without a try of its own."""
        return self.verdict if self.verdict is not None else self.default(tokens)

    def other(self, threads: int) -> int:
        return self.batch_threads if threads == self.decode_threads else self.decode_threads

    def pick(self, tokens: int) -> int:
        """The thread count for a step of ``tokens`` tokens."""
        size = self.size_class(tokens)
        best = self.best.get(size) or self.fallback(tokens)
        if self.decode_threads == self.batch_threads:
            return best
        self.until[size] = self.until.get(size, TUNE_EXPLORE_FIRST) - 1
        other = self.other(best)  # fewer threads cannot stall: only a try of more waits for quiet
        due = self.until[size] <= 0 and (other < best or self.elapsed >= self.quiet_until)
        return other if due else best

    def record(self, tokens: int, threads: int, seconds: float) -> None:
        """A step of ``tokens`` tokens on ``threads`` threads took ``seconds``."""
        size = self.size_class(tokens)
        key, per_token = (size, threads), seconds / tokens
        before = self.seconds.get(key)
        self.seconds[key] = per_token if before is None else \
            before + TUNE_SMOOTHING * (per_token - before)
        self.elapsed += seconds
        best = self.best.get(size) or self.fallback(tokens)
        other = self.seconds.get((size, self.other(threads)))
        if threads == best:
            if other is not None and self.seconds[key] > other:  # it got slower: try the other now
                self.until[size] = min(self.until.get(size, TUNE_EXPLORE_FIRST), 1)
            return
        wait = self.wait.get(size, TUNE_EXPLORE_FIRST)  # that step was a try of the other count
        if other is None or per_token < other:  # the try itself, not an average of old stalls
            best, wait = threads, TUNE_EXPLORE_FIRST
            self.seconds[key] = per_token
        else:
            wait = min(wait * 2, TUNE_EXPLORE_MOST)
            self.quiet_until = self.elapsed + (seconds - other * tokens) / TUNE_TRY_COST
        self.best[size] = self.verdict = best
        self.wait[size] = self.until[size] = wait
