import pytest
from dp_accounting.pld import pld_privacy_accountant as pld
from dp_accounting.rdp import rdp_privacy_accountant as rdp

from privehr.privacy.calibration import calibrate_noise_multiplier, dpsgd_event
from privehr.privacy.errors import PrivacyConfigError


def eps(sigma, q, steps, delta=1e-5, acct=pld.PLDAccountant):
    return acct().compose(dpsgd_event(q, sigma, steps)).get_epsilon(delta)


@pytest.mark.slow
def test_calibrated_sigma_meets_target_and_is_tight():
    sigma = calibrate_noise_multiplier(2.0, 1e-5, 0.02, 100, rounds=2)
    assert eps(sigma, 0.02, 200) <= 2.0
    assert eps(sigma * 0.99, 0.02, 200) > 2.0
    assert sigma == round(sigma, 4 - 1 - int(f"{sigma:e}".split("e")[1]))  # 4 significant


@pytest.mark.slow
def test_rdp_calibration_needs_more_noise_and_meets_rdp_target():
    s_pld = calibrate_noise_multiplier(3.0, 1e-5, 0.05, 100)
    s_rdp = calibrate_noise_multiplier(3.0, 1e-5, 0.05, 100, accountant="rdp")
    assert s_rdp > s_pld
    assert eps(s_rdp, 0.05, 100, acct=rdp.RdpAccountant) <= 3.0


@pytest.mark.parametrize("kwargs, field", [
    (dict(target_epsilon=0.0), "target_epsilon"),
    (dict(delta=1.0), "delta"),
    (dict(sampling_prob=0.0), "sampling_prob"),
    (dict(steps=0), "steps"),
    (dict(accountant="gdp"), "accountant"),
])
def test_invalid_arguments_name_the_field(kwargs, field):
    args = dict(target_epsilon=1.0, delta=1e-5, sampling_prob=0.1, steps=10)
    args.update(kwargs)
    with pytest.raises(PrivacyConfigError) as err:
        calibrate_noise_multiplier(**args)
    assert err.value.field == field
