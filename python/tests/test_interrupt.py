"""Ctrl-C stops a run between blocks: SIGINT during a long decomposition (the GIL released,
the engine busy) becomes KeyboardInterrupt at the next residual-stream event, and the run
does not reach the output. Generation stops between tokens."""

import os
import signal
import threading

import numpy as np
import pytest

from conftest import DEMO_PROMPT


def long_prompt(model):
    """As many tokens as the context holds: a run of several seconds at float64."""
    rng = np.random.default_rng(0)
    return [1] + [int(t) for t in rng.integers(3, model.config["vocab_size"], size=model.config["max_seq_len"] - 1)]


def send_sigint_after(seconds):
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    return timer


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals need the main thread")
def test_sigint_interrupts_a_decomposition_between_blocks(stories64):
    L = stories64.config["n_layers"]
    seen, timers = [], []

    def progress(name, layer, boundary):
        seen.append(boundary)
        if boundary == 0:  # the propagation has started: Ctrl-C while the engine runs block 0
            timers.append(send_sigint_after(0.05))

    try:
        with pytest.raises(KeyboardInterrupt):
            stories64.decompose(long_prompt(stories64), keep_positions=[-1], progress=progress)
    finally:
        for timer in timers:
            timer.join()
    assert seen[0] == 0                    # it had started ...
    assert max(seen) < 2 * L               # ... and stopped before the output
    # The model is still usable afterwards, with the same numbers as before.
    ids = stories64.tokenize(DEMO_PROMPT)
    r = stories64.decompose(ids)
    assert abs(r.component_logits(21, 267).sum() - r.logit(21, 267)) < 1e-12


def test_exception_from_progress_stops_the_run(stories64):
    seen = []

    def progress(name, layer, boundary):
        seen.append((name, layer, boundary))
        if boundary == 3:
            raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        stories64.decompose([1, 403, 407], progress=progress)
    assert seen == [("start", 0, 0), ("attn_resid", 0, 1), ("layer_out", 0, 2), ("attn_resid", 1, 3)]


def test_sigint_stops_generation_between_tokens(stories64):
    timer = send_sigint_after(0.3)
    try:
        with pytest.raises(KeyboardInterrupt):
            stories64.generate(long_prompt(stories64)[:300], 200)  # ~200 forward passes of 300+ tokens
    finally:
        timer.cancel()
