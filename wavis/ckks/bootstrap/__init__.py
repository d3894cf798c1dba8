"""CKKS bootstrapping (``Bootstrapper``): ModRaise, CoeffsToSlots, EvalMod, SlotsToCoeffs.

    params = CkksParameters.bootstrappable("testing-n1024")
    plan = Bootstrapper.key_plan(params)              # steps + key-set size, before generation
    kg = KeyGenerator(params)
    evk = kg.evaluation_keys(galois_steps=plan.galois_steps, conjugation=True)
    bs = Bootstrapper(params, evk)
    fresh = bs.bootstrap(ct)                          # level params.max_depth again

See docs/bootstrapping.md for the algorithms, presets and the input contract.
"""

from .bootstrapper import BootstrapKeyPlan, Bootstrapper
from .evalmod import approximation_error_log2, cosine_coefficients, failure_log2

__all__ = ["Bootstrapper", "BootstrapKeyPlan", "approximation_error_log2", "cosine_coefficients", "failure_log2"]
