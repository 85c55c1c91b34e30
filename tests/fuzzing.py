"""Settings shared by the fuzz tests (Hypothesis property tests of the
contract: a result or a documented exception, no crash, no hang, no
mutation of inputs).

CI runs a bounded number of examples per test; set
``SCRATCHNET_FUZZ_EXAMPLES`` to run longer, e.g.
``SCRATCHNET_FUZZ_EXAMPLES=5000 python -m pytest -m fuzz``.
"""

import os

import hypothesis

FUZZ_EXAMPLES = int(os.environ.get("SCRATCHNET_FUZZ_EXAMPLES", "40"))


def fuzz_settings(**overrides):
    """``hypothesis.settings`` for a fuzz test: FUZZ_EXAMPLES examples, no
    per-example deadline (timeouts are the test's own business), derandomized
    in CI so a run is reproducible unless asked to explore."""
    kwargs = dict(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        derandomize="SCRATCHNET_FUZZ_EXAMPLES" not in os.environ,
        suppress_health_check=[hypothesis.HealthCheck.too_slow, hypothesis.HealthCheck.data_too_large],
    )
    kwargs.update(overrides)
    return hypothesis.settings(**kwargs)
