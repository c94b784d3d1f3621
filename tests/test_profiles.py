"""Every chapter's settings resolve at every profile, and the full profile is the fast recipe."""

import pytest

from fairens_core.profiles import BASE, CHAPTERS, PROFILES, chapter_settings


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("chapter", sorted(CHAPTERS))
def test_chapter_settings_resolve(chapter, profile):
    settings = chapter_settings(chapter, profile)
    assert settings.profile == profile and settings.config.members > 0


def test_full_profile_is_the_fast_gpu_recipe():
    cfg = chapter_settings("bottom_k", "full").config
    assert (cfg.dataset, cfg.model, cfg.precision, cfg.channels_last) == ("cifar10_jpeg", "fastcnn", "bf16", True)
    assert cfg.epochs == BASE["full"]["epochs"] == 10


def test_unknown_parameters_and_profiles_are_named():
    with pytest.raises(ValueError, match="profile='huge'"):
        chapter_settings("bottom_k", "huge")
    with pytest.raises(ValueError, match="unknown parameter 'memebers'"):
        chapter_settings("bottom_k", "default", memebers=3)


def test_larger_pools_must_be_larger():
    assert chapter_settings("bottom_k", "default").large_members == 50
    # the profile's 50 is no larger pool for 60 members: the section is skipped, not an error
    assert chapter_settings("bottom_k", "default", members=60).large_members == 0
    with pytest.raises(ValueError, match="large_members=10: the larger pools need more than members=20"):
        chapter_settings("bottom_k", "default", large_members=10)


def test_a_reader_can_switch_off_the_costly_sections():
    # None keeps the profile's choice; 0 and [] switch the larger pools and the difficulty map off
    settings = chapter_settings("bottom_k", "default", large_members=0, difficulty_sizes=[])
    assert settings.large_members == 0 and settings.difficulty_sizes == []
    assert chapter_settings("bottom_k", "default", large_members=None).large_members == 50
    settings = chapter_settings("minority_groups", "default", lr_factors=[], batch_sizes=[])
    assert settings.lr_factors == [] and settings.batch_sizes == []


def test_independent_vs_joint_may_compare_equal_sizes():
    # its large_members is another knob (the larger joint ensemble): equal to members is allowed
    assert chapter_settings("independent_vs_joint", "smoke", members=3, large_members=3).large_members == 3
