"""The pure merge logic: the join is a semilattice, and local change detection is exact."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from otpbridge.engine.merge import (
    BaseEntry,
    Record,
    alive,
    digest,
    join,
    local_changes,
    merge_views,
)
from tests.support.engine import make_account

ACCS = [make_account(str(i)) for i in range(3)] + [make_account(f"h{i}", kind="hotp", counter=i) for i in range(2)]


def rec(i: int, clock: int, dev: str, deleted: bool = False, counter: int = 0, rename: str = "") -> Record:
    acc = ACCS[i]
    if rename:
        acc = acc.replace(name=rename)
    return Record(acc.identity, clock, dev, None if deleted else acc, counter)


records = st.builds(
    rec,
    st.integers(0, len(ACCS) - 1),
    st.integers(0, 5),
    st.sampled_from(["aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc"]),
    st.booleans(),
    st.integers(0, 9),
    st.sampled_from(["", "x", "y"]),
)


def norm(view):
    return {k: (r.clock, r.device, r.deleted, r.counter, r.digest) for k, r in view.items()}


def same_rank_same_content(recs):
    """Within one (id, clock, device) the writer made one record: model that."""
    seen = {}
    out = []
    for r in recs:
        key = (r.id, r.clock, r.device)
        if key in seen:
            r = Record(r.id, r.clock, r.device, seen[key].account, r.counter)
        else:
            seen[key] = r
        out.append(r)
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(records, max_size=8), st.lists(records, max_size=8), st.lists(records, max_size=8))
def test_merge_is_commutative_associative_idempotent(a, b, c):
    allr = same_rank_same_content(a + b + c)
    a, b, c = allr[: len(a)], allr[len(a) : len(a) + len(b)], allr[len(a) + len(b) :]
    va, vb, vc = (merge_views([{r.id: r} for r in x]) for x in (a, b, c))
    ab_c = merge_views([merge_views([va, vb]), vc])
    a_bc = merge_views([va, merge_views([vb, vc])])
    c_ba = merge_views([vc, vb, va])
    assert norm(ab_c) == norm(a_bc) == norm(c_ba)
    assert norm(merge_views([ab_c, ab_c])) == norm(ab_c)


def test_newest_wins_with_device_tiebreak_and_hotp_counter_max():
    h = ACCS[3]
    a = Record(h.identity, 3, "aaaaaaaaaaaa", h.replace(name="old"), 7)
    b = Record(h.identity, 3, "bbbbbbbbbbbb", h.replace(name="new"), 2)
    won = join(a, b)
    assert won.device == "bbbbbbbbbbbb" and won.account.name == "new"
    assert won.counter == 7 and won.current().counter == 7  # the counter never goes backwards
    tomb = Record(h.identity, 4, "aaaaaaaaaaaa", None, 1)
    assert join(won, tomb).deleted and join(tomb, won).deleted
    assert alive({h.identity: join(won, tomb)}) == {}


def base_of(accs):
    return {a.identity: BaseEntry(digest(a), a.counter) for a in accs}


def view(*recs):
    return {r.id: r for r in recs}


def test_local_changes_add_edit_delete_against_base():
    a, b, c = ACCS[:3]
    base = base_of([a, b])
    remote = view(Record(a.identity, 1, "bbbbbbbbbbbb", a), Record(b.identity, 1, "bbbbbbbbbbbb", b))
    local = {a.identity: a.replace(name="renamed"), c.identity: c}  # a edited, b deleted, c added
    ch = local_changes(local, base, remote, device="aaaaaaaaaaaa", base_clock=1)
    assert sorted(ch.added) == [c.identity] and ch.edited == [a.identity] and ch.deleted == [b.identity]
    assert all(r.clock == 2 and r.device == "aaaaaaaaaaaa" for r in ch.records.values())
    assert ch.records[b.identity].deleted
    assert not ch.conflicts


def test_unchanged_local_produces_nothing_and_remote_equal_change_is_skipped():
    a, b = ACCS[:2]
    base = base_of([a])
    remote = view(Record(a.identity, 1, "bbbbbbbbbbbb", a), Record(b.identity, 2, "bbbbbbbbbbbb", b))
    assert not local_changes({a.identity: a}, base, remote, device="aaaaaaaaaaaa", base_clock=1)
    # b arrived through the store already (a crash after applying it): not a change
    assert not local_changes({a.identity: a, b.identity: b}, base, remote, device="aaaaaaaaaaaa", base_clock=1)


def test_missing_account_is_not_a_deletion_without_base():
    a, b = ACCS[:2]
    remote = view(Record(a.identity, 5, "bbbbbbbbbbbb", a))
    ch = local_changes({b.identity: b}, None, remote, device="aaaaaaaaaaaa", base_clock=0)
    assert ch.added == [b.identity] and not ch.deleted
    assert ch.records[b.identity].clock == 6


def test_fresh_join_keeps_remote_fields_and_reports_conflict():
    a = ACCS[0]
    remote = view(Record(a.identity, 5, "bbbbbbbbbbbb", a))
    ch = local_changes({a.identity: a.replace(name="mine")}, None, remote, device="aaaaaaaaaaaa", base_clock=0)
    assert not ch.records
    assert len(ch.conflicts) == 1 and ch.conflicts[0].winner == "remote"


def test_concurrent_edit_is_a_conflict_and_counter_only_change_is_not():
    a, h = ACCS[0], ACCS[3]
    base = base_of([a, h])
    remote = view(
        Record(a.identity, 4, "bbbbbbbbbbbb", a.replace(name="theirs")),
        Record(h.identity, 4, "bbbbbbbbbbbb", h.replace(name="renamed"), 0),
    )
    local = {a.identity: a.replace(name="mine"), h.identity: h.replace(counter=9)}
    ch = local_changes(local, base, remote, device="aaaaaaaaaaaa", base_clock=3)
    assert [c.id for c in ch.conflicts] == [a.identity]
    hr = ch.records[h.identity]
    assert (hr.clock, hr.device, hr.counter) == (4, "bbbbbbbbbbbb", 9)  # their rename kept, our counter
    merged = merge_views([remote, ch.records])
    assert merged[h.identity].current().name == "renamed" and merged[h.identity].current().counter == 9


def test_record_json_round_trip_and_mismatched_id_rejected():
    import pytest

    r = Record(ACCS[3].identity, 2, "aaaaaaaaaaaa", ACCS[3], 4)
    back = Record.from_json(r.to_json())
    assert back == r
    # v2: an id is kept across renames, so it need not match; it must still be an id
    renamed = Record(ACCS[3].identity, 3, "aaaaaaaaaaaa", ACCS[3].replace(name="new"), 4)
    assert Record.from_json(renamed.to_json()) == renamed
    bad = r.to_json()
    bad["id"] = "not an id"
    with pytest.raises(ValueError):
        Record.from_json(bad)
    # v1 (0.1.0): the id is the account's kind + secret hash
    old = Record(ACCS[3].secret_id, 2, "aaaaaaaaaaaa", ACCS[3], 4)
    assert Record.from_json(old.to_json(), version=1) == old
    bad = old.to_json()
    bad["id"] = ACCS[0].secret_id
    with pytest.raises(ValueError):
        Record.from_json(bad, version=1)


# --- identity (SPEC §3 revised): stable record ids, renames are edits ---------------------
def _base_v2(pairs):
    from otpbridge.engine.merge import base_entry

    return {rid: base_entry(acc) for rid, acc in pairs}


def test_assign_ids_keeps_accounts_sharing_a_secret_apart():
    from otpbridge.engine.merge import assign_ids

    a = ACCS[0]
    twins = [a.replace(name=f"Account {i}") for i in range(20)]
    ids = assign_ids(twins, None, {})
    assert len(set(ids.values())) == 20


def test_rename_is_one_edit_of_the_record_not_delete_plus_add():
    from otpbridge.engine.merge import assign_ids

    a, b = ACCS[0], ACCS[1]
    rid_a, rid_b = a.identity, b.identity
    remote = view(Record(rid_a, 1, "bbbbbbbbbbbb", a), Record(rid_b, 1, "bbbbbbbbbbbb", b))
    base = _base_v2([(rid_a, a), (rid_b, b)])
    renamed = a.replace(issuer="Renamed", digits=8)
    ids = assign_ids([renamed, b], base, remote)
    assert ids[renamed.identity] == rid_a
    local = {ids[x.identity]: x for x in (renamed, b)}
    ch = local_changes(local, base, remote, device="aaaaaaaaaaaa", base_clock=1)
    assert ch.edited == [rid_a] and ch.renamed == [rid_a] and not ch.deleted and not ch.added
    merged = merge_views([remote, ch.records])
    assert alive(merged)[rid_a] == renamed and len(alive(merged)) == 2


def test_rename_here_racing_an_edit_there_is_a_conflict():
    from otpbridge.engine.merge import assign_ids

    a = ACCS[0]
    rid = a.identity
    base = _base_v2([(rid, a)])
    remote = view(Record(rid, 3, "bbbbbbbbbbbb", a.replace(period=60)))  # edited on b since our base
    mine = a.replace(name="renamed here")
    ids = assign_ids([mine], base, remote)
    assert ids[mine.identity] == rid
    ch = local_changes({rid: mine}, base, remote, device="aaaaaaaaaaaa", base_clock=1)
    assert [c.id for c in ch.conflicts] == [rid] and not ch.deleted


def test_rename_pairs_with_a_0_1_0_base():
    """A state written by 0.1.0: base keyed by kind + secret, no identity stored."""
    from otpbridge.engine.merge import assign_ids

    a = ACCS[0]
    rid = a.secret_id
    remote = view(Record(rid, 1, "bbbbbbbbbbbb", a))
    base = {rid: BaseEntry(digest(a), 0)}
    assert assign_ids([a], base, remote) == {a.identity: rid}
    mine = a.replace(issuer="New")
    assert assign_ids([mine], base, remote) == {mine.identity: rid}
    ch = local_changes({rid: mine}, base, remote, device="aaaaaaaaaaaa", base_clock=1)
    assert ch.edited == [rid] and ch.renamed == [rid] and not ch.deleted


def test_new_account_never_takes_an_id_in_use():
    from otpbridge.engine.merge import assign_ids

    a = ACCS[0]
    moved = a.replace(name="moved")
    remote = view(Record(a.identity, 2, "bbbbbbbbbbbb", moved))  # a's record now holds "moved"
    ids = assign_ids([moved, a], _base_v2([(a.identity, moved)]), remote)
    assert ids[moved.identity] == a.identity
    assert ids[a.identity] != a.identity  # the re-added original gets a fresh id
