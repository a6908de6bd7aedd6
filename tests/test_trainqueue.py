"""The queue's rule alone (vae_core.trainqueue.FairQueue), with a clock the tests drive: no Ray."""
import pytest

from vae_core.config import ModelConfig, TrainConfig
from vae_core.runs import RunSpec
from vae_core.trainqueue import FairQueue


def specs(n, epochs=5):
    return [RunSpec(ModelConfig(kind="vae", latent_dim=2), TrainConfig(dataset="digits", epochs=epochs))
            for _ in range(n)]


def add(q, owner, n, now=0.0, cost=0.0):
    return q.add(owner, owner.upper(), specs(n), [cost] * n, now)


def drain(q, workers=1):
    """Run the queue to the end, each run taking one time unit; returns owners in start order."""
    order, t, running = [], 0.0, []
    while True:
        for item in q.next_runs(workers - len(running)):
            q.started(*item, t)
            order.append(q.jobs[item[0]]["owner"])
            running.append(item)
        if not running:
            return order
        t += 1.0
        q.finished(*running.pop(0), "finished", t)


def test_round_robin_across_owners_not_first_come_first_served():
    q = FairQueue(per_owner=1)
    add(q, "a", 3)            # a's sweep of three arrives first
    add(q, "b", 1)
    add(q, "c", 2)
    assert drain(q) == ["a", "b", "c", "a", "c", "a"]


def test_the_per_owner_cap_leaves_workers_to_the_others():
    q = FairQueue(per_owner=2)
    add(q, "a", 6)
    add(q, "b", 1)
    started = [q.jobs[j]["owner"] for j, _ in q.next_runs(4)]
    assert started == ["a", "b", "a"]          # a third run of a's would break the cap of 2


def test_one_unfinished_job_per_owner_and_no_empty_or_huge_jobs():
    q = FairQueue()
    add(q, "a", 1)
    with pytest.raises(ValueError, match="already have"):
        add(q, "a", 1)
    with pytest.raises(ValueError):
        q.add("b", "B", [], [], 0.0)
    with pytest.raises(ValueError):
        add(q, "c", 10)


def test_stop_takes_waiting_runs_out_and_leaves_running_ones_to_finish():
    q = FairQueue(per_owner=1)
    job = add(q, "a", 3)
    (item,) = q.next_runs(1)
    q.started(*item, 0.0)
    assert q.stop("a", 1.0) == [item]
    assert [r["status"] for r in job["runs"]] == ["running", "cancelled", "cancelled"]
    assert q.next_runs(1) == []
    q.finished(*item, "stopped", 2.0)
    assert job["status"] == "stopped"


def test_places_and_estimates_follow_the_rule():
    q = FairQueue(per_owner=1, overhead_s=0.0, rate=1.0)
    add(q, "a", 2, cost=10.0)
    add(q, "b", 1, cost=10.0)
    add(q, "c", 1, cost=10.0)
    plan = q.schedule(slots=1, now=0.0)
    a, b, c = (q.by_owner[o] for o in "abc")
    assert [plan[j][0] for j in (a, b, c)] == [0, 1, 2]              # places
    assert [plan[j][1] for j in (a, b, c)] == [0.0, 10.0, 20.0]      # starts
    assert plan[a][2] == 40.0                                      # a's second run comes after c's
    assert q.schedule(slots=2, now=0.0)[c][1] == 10.0              # two workers: c starts sooner


def test_the_pace_of_finished_runs_tunes_the_estimates():
    q = FairQueue(per_owner=1, overhead_s=0.0, rate=1.0)
    add(q, "a", 1, cost=100.0)
    (item,) = q.next_runs(1)
    q.started(*item, 0.0)
    q.finished(*item, "finished", 10.0)                # took 10 s, expected 100 s
    add(q, "b", 1, cost=100.0)
    assert 10.0 < q.estimate(q.by_owner["b"], 0) < 100.0             # later estimates move toward it


def test_abandoned_jobs_are_reported_and_old_finished_ones_dropped():
    q = FairQueue(per_owner=1)
    add(q, "a", 1, now=0.0)
    add(q, "b", 1, now=0.0)
    add(q, "c", 1, now=0.0)                                          # waits in the queue all along
    q.jobs[q.by_owner["c"]]["save_dir"] = None
    sweep = add(q, "d", 1, now=0.0)
    sweep["save_dir"], sweep["names"] = "/somewhere", ["d-ae"]      # a sweep that saves itself
    items = q.next_runs(2)
    for item in items:
        q.started(*item, 0.0)
    assert {q.jobs[j]["owner"] for j, _ in items} == {"a", "b"}
    q.finished(*items[0], "finished", 1.0)
    # b trained unwatched for 100 s: stop it; c only waited; a is done and old: dropped.
    assert q.forget_old(now=100.0, keep_s=50.0, abandon_s=50.0) == ["b"]
    assert "a" not in q.by_owner
    q.jobs[q.by_owner["b"]]["last_seen"] = 100.0                     # its page polled again
    assert q.forget_old(now=120.0, keep_s=50.0, abandon_s=50.0) == []
