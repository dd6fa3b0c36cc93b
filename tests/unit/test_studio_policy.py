"""The pure policy of studio scheduling (scheduling.py): fair share over generated queues,
limit amounts and room, frame spans."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from coalition import scheduling as s

users = st.sampled_from(["ann", "bob", "cat", "dan", "eve"])
queues = st.dictionaries(users, st.integers(min_value=0, max_value=10_000), min_size=1)
weights = st.dictionaries(users, st.sampled_from([0.5, 1.0, 2.0, 3.0, 4.0]))


@settings(max_examples=200, deadline=None)
@given(queues, weights, st.integers(min_value=0, max_value=300))
def test_fair_shares_are_proportional_to_weights_among_users_with_work(
    queued: dict[str, int], w: dict[str, float], slots: int
) -> None:
    got = s.fair_shares(slots, queued, w)
    assert sum(got.values()) == min(slots, sum(queued.values()))  # no slot idles while work waits
    for user, n in got.items():
        assert n <= queued[user]  # nobody gets more than it has queued
    # A user below its queue (still wanting) is within one slot of its proportional share
    # relative to every other user: (running / weight) differ by at most one slot's worth.
    wanting = [u for u in got if got[u] < queued[u]]
    for a in wanting:
        for b in got:
            if got[b] == 0:
                continue
            wa, wb = w.get(a, 1.0), w.get(b, 1.0)
            assert got[a] / wa >= (got[b] - 1) / wb - 1e-9, (a, b, got)


def test_a_user_with_ten_frames_is_not_starved_by_one_with_ten_thousand() -> None:
    assert s.fair_shares(100, {"big": 10_000, "small": 10}, {}) == {"big": 90, "small": 10}
    assert s.fair_shares(100, {"big": 10_000, "other": 10_000}, {"big": 3}) == {"big": 75, "other": 25}


def test_fair_share_order_serves_the_furthest_behind_first() -> None:
    order = s.fair_share_order({"ann": 4, "bob": 1, "cat": 2}, {"ann": 4.0}, ["ann", "bob", "cat", "dan"])
    assert order == ["dan", "ann", "bob", "cat"]  # 0/1, 4/4 and 1/1 (by name), 2/1
    assert s.fair_share_order({}, {"off": 0}, ["off", "on"]) == ["on", "off"]  # weight 0: last


def test_limit_amounts_and_room() -> None:
    assert s.limit_amounts("nuke:1,arnold:2") == {"arnold": 2, "nuke": 1}
    assert list(s.limit_amounts("nuke:1,arnold:2")) == ["arnold", "nuke"]  # the locking order
    assert s.limit_amounts("") == {}
    assert s.limit_room(5, 3, 1, 1) and not s.limit_room(5, 3, 1, 2)


@given(st.integers(-50, 50), st.integers(-50, 50), st.integers(-50, 50), st.integers(-50, 50))
def test_frame_spans_overlap_like_sets_of_frames(a: int, b: int, c: int, d: int) -> None:
    one, two = s.frame_span(a, b), s.frame_span(c, d)
    if one is None or two is None:
        assert s.frames_overlap(one, two)  # an unknown span covers every frame
    else:
        shared = set(range(a, b + 1)) & set(range(c, d + 1))
        assert s.frames_overlap(one, two) == bool(shared)


def test_the_limits_section_of_the_ini(tmp_path: object) -> None:
    import pathlib

    import pytest

    from coalition.config import ConfigError, load_server_settings

    ini = pathlib.Path(str(tmp_path)) / "coalition.ini"
    ini.write_text(
        "[server]\nlimitsinterval = 5\n[limits]\nNuke = 5\narnold = 10\narnold.command = lmstat -c arnold\n"
    )
    settings = load_server_settings(str(ini))
    assert settings.limits == (("arnold", 10, "lmstat -c arnold"), ("nuke", 5, ""))
    assert settings.limitsinterval == 5
    for body, message in (
        ("bad name = 1", "not a limit name"),
        ("nuke = many", "[limits] nuke"),
        ("maya.command = x", "give maya a capacity too"),
    ):
        ini.write_text(f"[limits]\n{body}\n")
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            load_server_settings(str(ini))
