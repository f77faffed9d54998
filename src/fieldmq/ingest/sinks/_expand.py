"""Expanding raw payloads into rows with DuckDB SQL (the DuckDB and Parquet sinks).

The candidates of a :class:`~fieldmq.ingest.raw.RawBatch` are registered as the Arrow
table ``_raw (i, message_id, topic, payload)``; :data:`STAGE` then builds, on the same
connection:

* ``_e (i, key, type, atom)``: every top-level key of every valid JSON payload;
* ``_c``: the *clean* candidates (see :mod:`fieldmq.ingest.raw` for what that means),
  one row per message key, with the columns of ``messages`` plus ``i`` and ``is_data``;
* ``_fallback (i)``: the candidates the engine does not vouch for; Python decides those.

:data:`READINGS` (given the new keys in ``_new``) puts the readings of the inserted clean
messages in ``_rr``. The statements take one parameter: the receive time.
"""

from __future__ import annotations

from typing import Any

from ..raw import META_SQL, RawBatch
from ._arrow import pa

__all__ = ["MESSAGES", "READINGS", "STAGE", "raw_table", "stage"]

_NUMBER = "('UBIGINT', 'BIGINT', 'DOUBLE')"

STAGE = (
    # valid JSON without a comma before a closing bracket (DuckDB accepts trailing commas)
    r"""create or replace temp table _p as
select i, message_id, topic, payload,
       split_part(topic, '/', 1) as grp, split_part(topic, '/', 2) as device,
       split_part(topic, '/', 3) as kind,
       regexp_extract(topic, '(?s)^[^/]*/[^/]*/[^/]*/(.*)$', 1) as name
from _raw where json_valid(payload) and not regexp_matches(payload, ',\s*[\]}]')""",
    """create or replace temp table _e as
select p.i, j.key, j.type, j.atom from _p p, json_each(p.payload) j""",
    f"""create or replace temp table _c as
with a as (
    select i, count(*) as n, count(distinct key) as nd,
        bool_and(type in ('NULL', 'BOOLEAN', 'VARCHAR', 'UBIGINT', 'BIGINT', 'DOUBLE')) as flat,
        bool_and(type not in {_NUMBER}
                 or coalesce(isfinite(try_cast(atom as double)), false)) as finite,
        bool_and(key in {META_SQL} or type = 'NULL' or type in {_NUMBER}) as numeric,
        bool_or(key = 'device' and type = 'VARCHAR') as has_device,
        max(case when key = 'device' and type = 'VARCHAR'
                 then json_extract_string(atom, '$') end) as pdev,
        bool_or(key = 'ts' and type not in ('NULL', 'UBIGINT', 'BIGINT', 'DOUBLE')) as ts_bad_type,
        max(case when key = 'ts' and type in {_NUMBER} then try_cast(atom as double) end)
            as ts_num
    from _e group by i
), x as (
    select p.*, p.kind = 'data' and p.device <> '' as is_data,
           a.i is null as empty, coalesce(a.n = a.nd and a.flat and a.finite, false) as sane,
           coalesce(a.numeric, true) as numeric,
           not coalesce(a.has_device and a.pdev <> p.device, false) as same_device,
           not coalesce(a.ts_bad_type or a.ts_num < 0, false) as ts_ok,
           a.ts_num
    from _p p left join a using (i)
)
select i, message_id, topic, grp, device, kind, name,
       case when ts_num >= 0 then (case when ts_num > 1e11 then ts_num / 1000.0 else ts_num end)
            else $1 end as ts,
       $1 as received, payload, is_data
from x
where (empty or sane) and (not is_data or (numeric and same_device and ts_ok))
qualify row_number() over (partition by message_id order by i) = 1""",
    """create or replace temp table _fallback as
select i from _raw where i not in (select i from _c)
    and message_id not in (select message_id from _c)""",
)

READINGS = f"""create or replace temp table _rr as
select c.message_id, c.device, e.key as metric, c.ts, try_cast(e.atom as double) as value
from _new n join _c c using (message_id) join _e e on e.i = c.i
where c.is_data and e.key not in {META_SQL} and e.type <> 'NULL'"""

MESSAGES = """insert into messages
select message_id, topic, grp, device, kind, name, ts, received, payload from _c
on conflict do nothing returning message_id"""


def raw_table(raw: RawBatch) -> Any:
    """The candidates as the Arrow table ``_raw``."""
    p = pa()
    return p.table({
        "i": p.array(range(len(raw.keys)), type=p.int32()),
        "message_id": p.array(raw.keys, type=p.string()),
        "topic": p.array(raw.topics, type=p.string()),
        "payload": p.array(raw.texts, type=p.string()),
    })


def stage(con: Any, raw: RawBatch) -> list[int]:
    """Run :data:`STAGE` on DuckDB connection ``con`` over ``raw``'s candidates; returns
    the indices the engine could not vouch for (to be decoded in Python)."""
    con.register("_raw", raw_table(raw))
    try:
        for sql in STAGE:
            con.execute(sql, [raw.received] if "$1" in sql else None)
    finally:
        con.unregister("_raw")
    return [r[0] for r in con.execute("select i from _fallback order by i").fetchall()]
