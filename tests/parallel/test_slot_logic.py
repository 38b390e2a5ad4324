"""The slot choice and the per-member sampler, on their own (no model)."""

from __future__ import annotations

import itertools
import threading

import numpy as np

from app.providers.batch_jobs import SlotJob
from app.providers.llama_sampling import SamplingParams, SlotSampler
from app.providers.llama_slots import Slot, common_prefix, pick_slot
from app.providers.thread_tuner import TUNE_EXPLORE_FIRST, TUNE_TRY_COST, ThreadTuner


def test_common_prefix() -> None:
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([1, 2], [1, 2, 3]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix([5], [1]) == 0


def _slots(*contents: list[int]) -> list[Slot]:
    return [Slot(i, tokens=list(t), last_used=i + 1 if t else 0) for i, t in enumerate(contents)]


def test_the_longest_shared_prefix_wins_and_one_token_is_always_decoded_again() -> None:
    slots = _slots([1, 2, 3, 4, 5, 6], [1, 2, 3, 9], [])
    slot, reuse = pick_slot(slots, [1, 2, 3, 4, 5, 6])
    assert slot.seq_id == 0 and reuse == 5  # the last prompt token is decoded for its logits


def test_a_short_common_header_never_evicts_another_clients_cache() -> None:
    slots = _slots([7, 8, 1, 2, 3, 4, 5, 6], [7, 8, 9, 9, 9, 9], [])
    slot, reuse = pick_slot(slots, [7, 8, 5, 5, 5, 5, 5, 5])  # only the header is shared
    assert slot.seq_id == 2 and reuse == 0  # the empty slot, not a client's cache


def test_busy_slots_are_skipped_and_the_least_recently_used_goes_first() -> None:
    slots = _slots([1, 1, 1], [2, 2, 2], [3, 3, 3])
    slots[0].job = SlotJob(prompt=[1], sampler=SlotSampler(SamplingParams()), max_tokens=1,
                           cancelled=threading.Event())
    slots[1].last_used, slots[2].last_used = 9, 4
    slot, _ = pick_slot(slots, [5, 5, 5])
    assert slot.seq_id == 2
    for s in slots:
        s.job = s.job or SlotJob(prompt=[1], sampler=SlotSampler(SamplingParams()), max_tokens=1,
                                 cancelled=threading.Event())
    assert pick_slot(slots, [5]) is None


def test_greedy_bias_penalties_and_processor() -> None:
    logits = np.array([0.0, 5.0, 4.0, 1.0], dtype=np.float32)
    assert SlotSampler(SamplingParams(temperature=0)).pick(logits, []) == 1
    assert SlotSampler(SamplingParams(temperature=0, logit_bias={2: 2.0})).pick(logits, []) == 2
    assert SlotSampler(SamplingParams(temperature=0, presence_penalty=2.0)).pick(logits, [1]) == 2
    assert SlotSampler(SamplingParams(temperature=0, repeat_penalty=2.0)).pick(logits, [1]) == 2

    def only_three(_ids: object, scores: np.ndarray) -> np.ndarray:
        mask = np.full_like(scores, -np.inf)
        mask[3] = 0
        return scores + mask

    assert SlotSampler(SamplingParams(temperature=1.0, processor=only_three)).pick(logits, []) == 3
    assert logits[1] == 5.0  # the engine's row is never written


def test_a_seed_repeats_its_draws_and_top_k_limits_them() -> None:
    logits = np.linspace(0, 1, 50).astype(np.float32)
    a = SlotSampler(SamplingParams(temperature=1.5, top_k=5, top_p=1.0, min_p=0, seed=7))
    b = SlotSampler(SamplingParams(temperature=1.5, top_k=5, top_p=1.0, min_p=0, seed=7))
    first, second = [a.pick(logits, []) for _ in range(40)], [b.pick(logits, []) for _ in range(40)]
    assert first == second
    assert set(first) <= {45, 46, 47, 48, 49} and len(set(first)) > 1


def _run_tuner(tuner: ThreadTuner, tokens: int, seconds_per_token: dict[int, float],
               steps: int) -> list[int]:
    picks = []
    for _ in range(steps):
        threads = tuner.pick(tokens)
        picks.append(threads)
        tuner.record(tokens, threads, seconds_per_token[threads] * tokens)
    return picks


def test_the_tuner_starts_with_llama_cpps_choice_and_moves_to_the_faster_count() -> None:
    tuner = ThreadTuner(decode_threads=1, batch_threads=2)
    picks = _run_tuner(tuner, 4, {1: 0.004, 2: 0.002}, 100)
    assert picks[:TUNE_EXPLORE_FIRST - 1] == [1] * (TUNE_EXPLORE_FIRST - 1)  # decode count first
    assert picks[TUNE_EXPLORE_FIRST - 1] == 2  # then one try of the other
    assert picks[TUNE_EXPLORE_FIRST:].count(1) <= 3  # it won: kept, the loser tried now and then
    assert _run_tuner(tuner, 512, {1: 0.004, 2: 0.002}, 1) == [2]  # a prompt chunk: batch count


def test_a_losing_count_is_tried_ever_more_rarely() -> None:
    tuner = ThreadTuner(decode_threads=1, batch_threads=2)
    picks = _run_tuner(tuner, 8, {1: 0.002, 2: 0.012}, 2000)
    tries = [i for i, p in enumerate(picks) if p == 2]
    gaps = [b - a for a, b in itertools.pairwise(tries)]
    assert gaps == sorted(gaps) and gaps[-1] >= 8 * TUNE_EXPLORE_FIRST
    assert len(tries) <= 8  # a loaded machine pays for a few slow steps, not one in sixteen


def test_a_step_size_class_keeps_its_own_measurements() -> None:
    tuner = ThreadTuner(decode_threads=1, batch_threads=2)
    _run_tuner(tuner, 4, {1: 0.004, 2: 0.001}, 60)
    assert tuner.pick(5) == 2 and tuner.pick(600) == 2
    _run_tuner(tuner, 600, {1: 0.0001, 2: 0.001}, 60)
    assert tuner.best[tuner.size_class(600)] == 1 and tuner.best[tuner.size_class(4)] == 2
    assert ThreadTuner(decode_threads=2, batch_threads=2).pick(4) == 2


def test_a_size_class_not_tried_yet_follows_the_latest_verdict() -> None:
    tuner = ThreadTuner(decode_threads=1, batch_threads=2)
    assert tuner.pick(600) == 2  # llama.cpp's own choice for a prompt chunk
    _run_tuner(tuner, 4, {1: 0.002, 2: 0.02}, TUNE_EXPLORE_FIRST)  # a busy machine: two threads lose
    assert tuner.verdict == 1 and tuner.pick(600) == 1  # the long chunk is not sent to two threads


def test_a_stalling_try_keeps_every_class_from_trying_until_its_cost_is_amortised() -> None:
    tuner = ThreadTuner(decode_threads=1, batch_threads=2)
    picks = _run_tuner(tuner, 4, {1: 0.001, 2: 0.1}, TUNE_EXPLORE_FIRST)  # one step of 4 ms, a try of 400
    assert picks[-1] == 2 and tuner.best[tuner.size_class(4)] == 1
    quiet = (0.4 - 0.004) / TUNE_TRY_COST  # seconds of batch steps before any class tries again
    steps = int(quiet / 0.008)  # steps of 8 tokens (another class) at 1 ms a token
    later = _run_tuner(tuner, 8, {1: 0.001, 2: 0.1}, 10 * steps)
    assert later.index(2) >= steps - 1  # not at that class's 16th step: the stall is paid off first
    spent = 0.4 + 0.004 * (len(picks) - 1) + sum(0.8 if p == 2 else 0.008 for p in later)
    lost = 0.396 + 0.792 * later.count(2)  # what the tries cost beyond a single thread's steps
    assert later.count(2) >= 2  # it goes on trying, rarely: the run's end cuts the last quiet short
    assert lost / spent <= 1.2 * TUNE_TRY_COST


def test_the_count_in_use_getting_slower_than_the_others_last_measure_is_tried_at_once() -> None:
    tuner = ThreadTuner(decode_threads=1, batch_threads=2)
    _run_tuner(tuner, 4, {1: 0.004, 2: 0.001}, 40)  # an idle machine: two threads won
    assert tuner.best[tuner.size_class(4)] == 2
    picks = _run_tuner(tuner, 4, {1: 0.004, 2: 0.05}, 6)  # the other core got busy
    assert picks[:2] == [2, 1]  # one slow step, then the single thread again at once
    assert tuner.best[tuner.size_class(4)] == 1 and picks[2:] == [1] * 4


def test_a_machine_that_is_idle_again_gets_its_faster_count_back_on_one_try() -> None:
    tuner = ThreadTuner(decode_threads=1, batch_threads=2)
    _run_tuner(tuner, 4, {1: 0.004, 2: 0.001}, 40)  # idle: two threads
    _run_tuner(tuner, 4, {1: 0.004, 2: 0.2}, 40)  # busy: two threads stall, one thread again
    assert tuner.best[tuner.size_class(4)] == 1
    picks = _run_tuner(tuner, 4, {1: 0.004, 2: 0.001}, 20_000)  # idle again
    first_try = picks.index(2)
    after = picks[first_try + 1:first_try + 200]
    assert after[:TUNE_EXPLORE_FIRST - 1] == [2] * (TUNE_EXPLORE_FIRST - 1)  # one try won it back
    assert after.count(1) <= 4  # the loser is tried now and then
