"""CAS and toggle rules of the state record (spec sections 3 and 4.5, scenario 11)."""

import pytest

from patrol.engine.item_state import (
    DISABLE, ENABLE, ENABLE_RUNONCE_DISABLE, ENABLE_RUNONCE_ENABLE, RESTART,
    RUNONCE_DISABLE, RUNONCE_ENABLE, HistoryRecord, State,
)


def test_first_effective_change_bumps_cas_once_per_session():
    st = State()
    cas = st.cas
    with st.session() as s:
        s.set(disabled=True)
        s.set(restart=True)
        s.set(pid=42)
    assert st.cas == cas + 1


def test_setting_equal_values_is_no_change():
    st = State(disabled=True)
    cas = st.cas
    with st.session() as s:
        s.set(disabled=True, pid=0)
    assert st.cas == cas


@pytest.mark.parametrize("op", ["merge", "replace"])
def test_keyvalue_writes_always_count_even_empty(op):
    st = State()
    cas = st.cas
    with st.session() as s:
        getattr(s, f"{op}_keyvalue")({})
    assert st.cas == cas + 1


def test_history_append_counts_and_respects_limit():
    st = State(history_limit=5)
    for n in range(7):
        cas = st.cas
        with st.session() as s:
            s.append_history(HistoryRecord(instance_id=str(n), started=1.0, stopped=2.0))
        assert st.cas == cas + 1
    assert [r.instance_id for r in st.history] == ["2", "3", "4", "5", "6"]



def test_history_is_empty_and_read_only_until_the_first_record():
    """Most items never end an instance: their history is () (no deque kept), and it
    cannot be appended to behind the session's back (the record would not count)."""
    st = State(history_limit=2)
    assert st.history == () and not st.history
    with pytest.raises(AttributeError):
        st.history.append(HistoryRecord(instance_id="x", started=1.0, stopped=2.0))  # type: ignore[attr-defined]
    with st.session() as s:
        s.append_history(HistoryRecord(instance_id="1", started=1.0, stopped=2.0))
    assert [r.instance_id for r in st.history] == ["1"] and st.history_total == 1
    st.set_history([])
    assert st.history == ()
    st.set_history(HistoryRecord(instance_id=str(n), started=1.0, stopped=2.0) for n in range(3))
    assert [r.instance_id for r in st.history] == ["1", "2"]

def test_initial_cas_is_random_in_original_range():
    values = {State().cas for _ in range(50)}
    assert all(1 <= v <= 100_000 for v in values) and len(values) > 1


def test_on_change_called_only_when_something_changed():
    seen = []
    st = State(on_change=lambda state, durable: seen.append((state, durable)))
    with st.session() as s:
        s.set(disabled=False)
    assert seen == []
    with st.session() as s:
        s.set(disabled=True)
    assert seen == [(st, True)]


def test_a_session_that_only_refreshed_lastseen_is_not_durable():
    """The state file may batch such sessions (a ping flood), never any other change."""
    seen = []
    st = State(on_change=lambda state, durable: seen.append(durable))
    with st.session() as s:
        s.set(lastseen=1.0)
    with st.session() as s:
        s.set(lastseen=2.0, pid=7)
    with st.session() as s:
        s.set(lastseen=3.0)
        s.merge_keyvalue({})
    assert seen == [False, True, True]


# (running, toggle) -> expected (disabled, restart, run_once, run_once_consumed), from all-True/False start
TABLE = [
    (False, ENABLE, dict(disabled=False)),
    (False, DISABLE, dict(disabled=True, restart=False, run_once=False, run_once_consumed=False)),
    (False, RESTART, dict(disabled=False, restart=True, run_once=False, run_once_consumed=False)),
    (False, RUNONCE_ENABLE, dict(run_once=True, run_once_consumed=False)),
    (True, RUNONCE_ENABLE, dict(run_once=True, run_once_consumed=True)),
    (False, RUNONCE_DISABLE, dict(run_once=False, run_once_consumed=False)),
    (False, ENABLE_RUNONCE_ENABLE, dict(disabled=False, run_once=True, run_once_consumed=False)),
    (True, ENABLE_RUNONCE_ENABLE, dict(disabled=False, run_once=True, run_once_consumed=True)),
    (True, ENABLE_RUNONCE_DISABLE, dict(disabled=False, run_once=False, run_once_consumed=False)),
]


@pytest.mark.parametrize("running,toggle,expected", TABLE)
def test_toggle_table(running, toggle, expected):
    st = State(disabled=True)
    st.started = 1.0 if running else None
    with st.session() as s:
        s.toggle(toggle)
    for key, value in expected.items():
        assert getattr(st, key) == value, key


@pytest.mark.parametrize("toggle", [0, 8, 255])
def test_other_toggles_are_no_ops(toggle):
    st = State(disabled=True)
    cas = st.cas
    with st.session() as s:
        s.toggle(toggle)
    assert (st.disabled, st.cas) == (True, cas)


def test_no_keyvalues_is_one_shared_empty_mapping_that_sessions_replace_and_the_row_writes():
    import json

    from patrol.engine.state_rows import Item, item_row

    a, b = State(), State()
    assert a.keyvalue is b.keyvalue and dict(a.keyvalue) == {}  # shared while empty: never a dict per item
    with a.session() as s:
        s.merge_keyvalue({"k": 1})
    assert a.keyvalue == {"k": 1} and dict(b.keyvalue) == {}  # the shared one is never written to
    with a.session() as s:
        s.merge_keyvalue({"j": 2})
    assert a.keyvalue == {"k": 1, "j": 2}
    with a.session() as s:
        s.replace_keyvalue({})
    assert a.keyvalue is b.keyvalue
    assert json.loads(item_row(Item("app", "a", a, {}), 5))["keyvalue"] == {}


def test_rows_encode_log_files_and_history_records_as_asdict_did():
    """The rows name the fields once per class, not per item: same text as asdict's."""
    import json
    from dataclasses import asdict

    from patrol.engine.item_state import HistoryRecord, LogFiles
    from patrol.engine.state_rows import Item, history_rows, item_row

    st = State(started=1.5, pid=42, started_log=LogFiles("out.log", "err.log", True))
    with st.session() as s:
        s.append_history(HistoryRecord("i1", 1.0, 2.0, pid=7, exit_signal=15, reason="stopped",
                                       keyvalue={"k": [1, {"j": 2}]}, log="out.log"))
    item = Item("app", "a", st, {})
    row = json.loads(item_row(item, 5))
    assert row["started_log"] == asdict(st.started_log)
    assert list(row["started_log"]) == ["stdout", "stderr", "merged"]
    rows = history_rows(item, 0)
    assert [r[3] for r in rows] == [json.dumps(asdict(r)) for r in st.history]
