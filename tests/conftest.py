"""Suite-wide settings."""

from hypothesis import HealthCheck, settings

# Property tests assert behaviour, not speed: on a loaded 2-core machine input
# generation can be slow, and that must not fail the suite.
settings.register_profile(
    "voxgate", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("voxgate")
