"""Replay: a realistic collaboration folds into the expected state, and each rule, broken
once, raises a ReplayError naming the entry index and the author."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from ptm_p2p.errors import ChainError, DecodeError, ReplayError, RuleError, SignatureError
from ptm_p2p.ledger import entry as E
from ptm_p2p.ledger.crypto import Signer, sha256
from ptm_p2p.ledger.entry import AuthorChain, Entry
from ptm_p2p.ledger.replay import State, replay


def signer_for(name: str) -> Signer:
    """A deterministic test identity (same derivation as the ``signers`` fixture)."""
    return Signer(hashlib.sha256(f"ptm-test-key/{name}".encode()).digest())


DIGEST = "sha256:" + "cd" * 32
IMAGE = "127.0.0.1:5000/ptm/cox@" + DIGEST
LIMITS = {"timeout_s": 600, "memory_mb": 1024, "cpu_millis": 2000}


class Collab:
    """Builds a log the way the real roles would: one AuthorChain per identity."""

    def __init__(self) -> None:
        self.admin, self.hub = signer_for("admin"), signer_for("hub")
        self.researcher, self.auditor = signer_for("researcher"), signer_for("auditor")
        self.sites = {name: signer_for(name) for name in ("site-a", "site-b", "site-c")}
        self.chains: dict[bytes, AuthorChain] = {}
        self.log: list[Entry] = []
        self.clock = 1_700_000_000_000

    def add(self, signer: Signer, kind: str, payload: dict[str, Any]) -> Entry:
        chain = self.chains.setdefault(signer.public_key, AuthorChain(signer))
        self.clock += 1000
        made = chain.append(kind, payload, self.clock)
        self.log.append(made)
        return made

    def start(self) -> Collab:
        self.add(
            self.admin,
            E.GENESIS,
            E.genesis_payload(
                "ptm.example/collab-1",
                self.admin.public_key,
                "consortium",
                self.hub.public_key,
                "hub-org",
            ),
        )
        self.admit(self.researcher, "university", "researcher")
        self.admit(self.auditor, "regulator", "auditor")
        for name, site in self.sites.items():
            self.admit(site, name, "site")
        return self

    def admit(self, who: Signer, org: str, role: str) -> Entry:
        return self.membership("admit", who, org, role)

    def revoke(self, who: Signer, *org_role_reason: str) -> Entry:
        return self.membership("revoke", who, *org_role_reason)

    def membership(
        self, action: str, who: Signer, *org_role_reason: str, by: Signer | None = None
    ) -> Entry:
        """``action`` (admit or revoke) of ``who`` as ``org, role`` (and a reason), signed by
        ``by`` (default the admin)."""
        payload = E.membership_payload(action, who.public_key, *org_role_reason)
        return self.add(by or self.admin, E.MEMBERSHIP, payload)

    def task(self, sites: list[str], image: str = IMAGE, by: Signer | None = None) -> Entry:
        inputs = {self.sites[s].public_key: f"round 1 for {s}".encode() for s in sites}
        return self.add(
            by or self.researcher,
            E.TASK,
            E.task_payload(image, inputs, LIMITS, algorithm="cox/round-1"),
        )

    def result(self, site: str, task: Entry, status: str = "ok", digest: str = DIGEST) -> Entry:
        return self.add(
            self.sites[site],
            E.RESULT,
            E.result_payload(task, status, b"sums", digest, sha256(b"log of " + site.encode())),
        )


def fails(log: list[Entry], index: int, who: str, cause: type, match: str) -> ReplayError:
    with pytest.raises(ReplayError, match=match) as info:
        replay(log)
    error = info.value
    assert error.index == index
    assert error.author is not None and who in error.author
    assert isinstance(error.cause, cause)
    assert f"entry {index} " in str(error)
    return error


def test_a_small_collaboration_replays_into_the_expected_state() -> None:
    c = Collab().start()
    first = c.task(["site-a", "site-b", "site-c"])
    c.result("site-a", first)
    c.result("site-c", first, status="refused", digest=DIGEST)
    second = c.task(["site-b"])
    c.result("site-b", first, status="timeout")
    c.revoke(c.sites["site-c"], "site-c", "site", "left the study")
    c.result("site-b", second, status="failed")

    state = replay(c.log)
    assert state.size == len(c.log) == 13
    assert state.origin == "ptm.example/collab-1"
    assert state.admin == c.admin.public_key and state.hub == c.hub.public_key
    assert state.kind_counts == {"genesis": 1, "membership": 6, "task": 2, "result": 4}
    assert state.members[c.hub.public_key].role == "hub"
    site_c = state.members[c.sites["site-c"].public_key]
    assert (site_c.org, site_c.role, site_c.admitted_at, site_c.revoked_at) == (
        "site-c",
        "site",
        5,
        11,
    )
    assert {m.org for m in state.active_members("site")} == {"site-a", "site-b"}
    task = state.tasks[first.hash]
    assert task.publisher == c.researcher.public_key and task.index == 6
    assert task.image == IMAGE and task.image_digest == DIGEST and task.limits == LIMITS
    assert task.done and state.tasks[second.hash].done
    assert {state.describe(k): r.status for k, r in task.results.items()} == {
        state.describe(c.sites["site-a"].public_key): "ok",
        state.describe(c.sites["site-b"].public_key): "timeout",
        state.describe(c.sites["site-c"].public_key): "refused",
    }
    assert len(state.results) == 4
    assert state.heads[c.admin.public_key] == (7, c.log[11].hash)
    assert state.author_counts[c.sites["site-b"].public_key] == 2
    assert state.describe(c.researcher.public_key).endswith("(university)")
    # Raw bytes replay to the same state, and replay can continue from a state.
    again = replay([e.raw for e in c.log[:7]])
    replay([e.raw for e in c.log[7:]], again)
    assert again.size == 13 and again.heads == state.heads and again.members == state.members


def test_pending_results() -> None:
    c = Collab().start()
    t = c.task(["site-a", "site-b"])
    c.result("site-b", t)
    task = replay(c.log).tasks[t.hash]
    assert not task.done and task.pending == [c.sites["site-a"].public_key]


# --- each rule broken once ---------------------------------------------------------------


def test_first_entry_must_be_genesis() -> None:
    c = Collab().start()
    fails(c.log[1:], 0, "", RuleError, "first entry of a log must be the genesis")


def test_only_one_genesis() -> None:
    c = Collab().start()
    # Entry itself refuses a genesis with seq != 1, so a second genesis can only be a genesis
    # by the admin at seq 1: here, the first one sent again.
    with pytest.raises(DecodeError, match="seq 1"):
        c.add(c.admin, E.GENESIS, c.log[0].payload)
    log = [*c.log, c.log[0]]
    fails(log, len(log) - 1, "consortium", RuleError, "second genesis")


def test_authors_must_be_members() -> None:
    c = Collab().start()
    stranger = signer_for("stranger")
    c.sites["stranger"] = stranger
    t = c.task(["site-a"])
    c.result("stranger", t)
    error = fails(c.log, 7, stranger.public_key.hex()[:8], RuleError, "not a member")
    assert "admit its key first" in str(error)


def test_per_author_seq_must_follow() -> None:
    c = Collab().start()
    t = c.task(["site-a"])
    c.chains[c.researcher.public_key].seq += 1  # skip seq 2
    c.task(["site-a"])
    fails(c.log, 7, "university", ChainError, "seq 3 does not follow .*expected 2")
    del t


def test_per_author_prev_must_link() -> None:
    c = Collab().start()
    c.task(["site-a"])
    c.chains[c.researcher.public_key].prev = b"\x42" * 32
    c.task(["site-a"])
    fails(c.log, 7, "university", ChainError, "prev .* is not the hash")


def test_equivocation_is_a_chain_error() -> None:
    c = Collab().start()
    c.task(["site-a"])
    c.chains[c.researcher.public_key] = AuthorChain(c.researcher)  # reuse seq 1
    c.task(["site-b"])
    fails(c.log, 7, "university", ChainError, "seq 1 does not follow")


def test_timestamps_never_go_backwards_in_a_chain() -> None:
    c = Collab().start()
    c.task(["site-a"])
    c.clock -= 10_000
    c.task(["site-a"])
    fails(c.log, 7, "university", ChainError, "before the author's previous entry")


def test_only_the_admin_admits() -> None:
    c = Collab().start()
    c.membership("admit", signer_for("friend"), "university", "researcher", by=c.researcher)
    fails(c.log, 6, "university", RuleError, "only the admin")


def test_admitting_twice_and_readmitting_a_revoked_key_are_refused() -> None:
    c = Collab().start()
    c.admit(c.sites["site-a"], "site-a", "site")
    fails(c.log, 6, "consortium", RuleError, "already a member")
    c = Collab().start()
    site = c.sites["site-a"]
    c.revoke(site, "site-a", "site")
    c.admit(site, "site-a", "site")
    fails(c.log, 7, "consortium", RuleError, "revocation is final")


REVOCATIONS: dict[str, tuple[Callable[[Collab], Signer], str, str, str]] = {
    "as another role": (
        lambda c: c.sites["site-a"],
        "site-a",
        "researcher",
        "admitted as site of site-a",
    ),
    "of the admin": (
        lambda c: c.admin,
        "consortium",
        "researcher",
        "admin's own key cannot be revoked",
    ),
    "of a stranger": (lambda c: signer_for("nobody"), "x", "site", "not an active member"),
}


@pytest.mark.parametrize("case", REVOCATIONS)
def test_revocations_must_match_the_membership(case: str) -> None:
    who, org, role, match = REVOCATIONS[case]
    c = Collab().start()
    c.revoke(who(c), org, role)
    fails(c.log, 6, "consortium", RuleError, match)


def test_only_researchers_publish_tasks() -> None:
    c = Collab().start()
    c.task(["site-a"], by=c.sites["site-b"])
    fails(c.log, 6, "site-b", RuleError, "only researchers publish tasks")


def test_tasks_target_admitted_sites_only() -> None:
    c = Collab().start()
    c.sites["auditor"] = c.auditor
    c.task(["site-a", "auditor"])
    fails(c.log, 6, "university", RuleError, r"target .*\(regulator\) is a auditor, not a site")
    c = Collab().start()
    c.sites["ghost"] = signer_for("ghost")
    c.task(["ghost"])
    fails(c.log, 6, "university", RuleError, "is not a member")


def test_revoked_keys_sign_nothing_after_revocation() -> None:
    c = Collab().start()
    t = c.task(["site-a"])
    c.revoke(c.sites["site-a"], "site-a", "site")
    c.result("site-a", t)
    fails(c.log, 8, "site-a", RuleError, "revoked at entry 7")
    c = Collab().start()
    c.revoke(c.sites["site-a"], "site-a", "site")
    c.task(["site-a"])
    fails(c.log, 7, "university", RuleError, "revoked at entry 6")


def test_results_only_from_targeted_sites_once_for_known_tasks() -> None:
    c = Collab().start()
    t = c.task(["site-a"])
    c.result("site-b", t)
    fails(c.log, 7, "site-b", RuleError, "does not target this site")

    c = Collab().start()
    t = c.task(["site-a"])
    c.result("site-a", t)
    c.result("site-a", t, status="failed")
    fails(c.log, 8, "site-a", RuleError, "second result on task at entry 6 .*entry 7")

    c = Collab().start()
    c.task(["site-a"])
    fake = msgspec.structs.replace(c.log[0], hash=b"\x99" * 32)  # a task no log holds
    c.result("site-a", fake)
    fails(c.log, 7, "site-a", RuleError, "not an earlier task entry")


def test_an_ok_result_must_name_the_tasks_image() -> None:
    c = Collab().start()
    t = c.task(["site-a"])
    c.result("site-a", t, digest="sha256:" + "ee" * 32)
    fails(c.log, 7, "site-a", RuleError, "status ok with image sha256:eeee")


def test_broken_bytes_are_reported_with_their_index() -> None:
    c = Collab().start()
    raws = [e.raw for e in c.log]
    raws[3] = raws[3][:-1] + bytes([raws[3][-1] ^ 1])
    with pytest.raises(
        ReplayError, match=r"entry 3 \(membership #4\) by .*consortium.*signature does not verify"
    ) as info:
        replay(raws)
    assert info.value.index == 3 and isinstance(info.value.cause, SignatureError)
    assert "consortium" in (info.value.author or "")
    raws[3] = b"\x92garbage"
    with pytest.raises(ReplayError, match="entry 3: ") as info:
        replay(raws)
    assert isinstance(info.value.cause, DecodeError)


def test_a_rejected_entry_leaves_the_state_unchanged() -> None:
    c = Collab().start()
    t = c.task(["site-a", "site-b"])
    state = replay(c.log)
    before = (
        state.size,
        dict(state.heads),
        dict(state.members),
        dict(state.kind_counts),
        dict(state.tasks[t.hash].results),
    )
    bad = [c.result("site-c", t), c.task(["site-c"], by=c.sites["site-a"])]
    for entry in bad:
        with pytest.raises(ReplayError):
            state.check(entry)
        with pytest.raises(ReplayError):
            state.apply(entry)
        assert (
            state.size,
            state.heads,
            state.members,
            state.kind_counts,
            state.tasks[t.hash].results,
        ) == before
    good = Collab().start()
    good.task(["site-a", "site-b"])
    ok = good.result("site-a", t)
    state.check(ok)
    assert state.size == before[0]
    state.apply(ok)
    assert state.size == before[0] + 1


def test_entries_apply_in_log_order_only() -> None:
    c = Collab().start()
    state = replay(c.log[:3])
    with pytest.raises(ReplayError, match="out of order"):
        state.apply(c.log[3], index=5)
    state.apply(c.log[3])
    assert state.size == 4


def test_empty_state() -> None:
    state = State()
    assert state.size == 0 and state.admin is None and not state.members


def test_replay_store_folds_a_store_in_batches_like_replay() -> None:
    from ptm_p2p.ledger.replay import replay, replay_store
    from ptm_p2p.ledger.simulate import simulate
    from ptm_p2p.ledger.store import MemoryStore

    store = MemoryStore()
    simulate(store, 60, 3, checkpoint_every=10)
    whole = replay(store.raw_range(0, store.size()))
    seen: list[int] = []
    batched = replay_store(store, batch=7, on_batch=lambda begin, entries: seen.append(begin))
    assert seen == list(range(0, 60, 7))
    assert (batched.size, batched.members, batched.tasks) == (60, whole.members, whole.tasks)
    # from a partial state on: only the entries after it
    partial = replay(store.raw_range(0, 25))
    assert replay_store(store, partial).size == 60


def test_replay_store_stops_at_the_first_bad_entry_with_its_index_as_size() -> None:
    from ptm_p2p.errors import LedgerError
    from ptm_p2p.ledger.replay import State, replay_store
    from ptm_p2p.ledger.simulate import simulate
    from ptm_p2p.ledger.store import MemoryStore

    store = MemoryStore()
    simulate(store, 30, 2, checkpoint_every=10)
    raw = bytearray(store._raws[12])  # a stored copy altered after the fact
    raw[-1] ^= 1
    store._raws[12] = bytes(raw)
    state = State()
    with pytest.raises(LedgerError):
        replay_store(store, state, batch=5)
    assert state.size == 12
