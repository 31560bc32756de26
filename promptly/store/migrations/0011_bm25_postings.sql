-- BM25 from a postings table, with exact top-k pruning (MaxScore), so that text and hybrid search stay fast at
-- 100k chunks. The scores and the ranking are the same as migration 0007's (Lucene's BM25, bm25s's default).
--
-- Why: 0007 found every chunk containing any query lexeme with the GIN index, then read each one's heap row,
-- decompressed its tsvector and cut it down to the query's lexemes. At 100k chunks a query made of common
-- words touched ~50k rows that way (0.5 s). Real questions are worse: the Python docs benchmark's questions
-- have a median of 6.5 lexemes whose document frequencies add up to 39 % of the chunks (over 100 % at p90).
--
--   fts_postings(lexeme, chunk_id, tf, dl)   one row per distinct lexeme of each chunk: its term count and
--                                             the chunk's length; the btree primary key (lexeme, chunk_id)
--                                             includes tf and dl, so ranking reads only that index
--                                             (index-only scan), never the chunks' heap nor a tsvector.
--   fts_lexemes.max_tf, .max_ratio          the largest tf, and tf / dl, of the lexeme in any chunk: with
--                                             them an upper bound of what the lexeme can add to a score.
--
-- The same statement-level triggers as 0007 keep the postings exact (inserted chunks add theirs, deleted ones
-- remove theirs, an update does both, a truncate empties them). The two bounds only grow on insert and are
-- left as they are on delete: still upper bounds, only looser, until `promptly_fts_recount()`.
--
-- Ranking (promptly_bm25): lexemes sorted by their upper bound ub, ascending (common, low-idf lexemes first).
-- A chunk that contains none of the lexemes t_s..t_m scores at most ub_1 + ... + ub_(s-1). So the top k is
-- found by scoring exactly only the chunks that contain one of the rarer lexemes t_s..t_m (their postings,
-- plus one primary-key probe per chunk and common lexeme), and checking that the k-th best score found is
-- above that bound; if it is not, the set of lexemes grows to the smallest one the k-th score allows and the
-- check is repeated (the k-th score only grows, so the second pass ends it, at worst by scoring every posting:
-- exact BM25 as before). Of the candidates, only those whose partial score (from t_s..t_m) plus that bound
-- reaches the k-th best partial score are probed for the common lexemes. So the very common lexemes (low idf,
-- long postings) are rarely read at all. Nothing is approximated: the result is the exact top k of the full
-- ranking, same order, same ties.

create table if not exists fts_postings (
    lexeme    text not null,
    chunk_id  uuid not null,
    tf        int not null,
    dl        int not null
);
alter table fts_lexemes add column if not exists max_tf int;
alter table fts_lexemes add column if not exists max_ratio float8;

-- Rebuild every statistic from the chunks (fills them for the chunks stored before this migration).
create or replace function promptly_fts_recount() returns void
language plpgsql as $$
begin
    perform 1 from fts_corpus where id for update;
    truncate fts_postings;
    insert into fts_postings (lexeme, chunk_id, tf, dl)
    select u.lexeme, c.id, coalesce(array_length(u.positions, 1), 1), c.fts_length
    from chunks c, unnest(c.fts) as u
    order by 1, 2;
    delete from fts_lexemes;
    insert into fts_lexemes (lexeme, df, max_tf, max_ratio)
    select p.lexeme, count(*), max(p.tf), max(p.tf::float8 / greatest(p.dl, 1))
    from fts_postings p group by p.lexeme;
    update fts_corpus set chunks = (select count(*) from chunks),
                          tokens = (select coalesce(sum(fts_length), 0) from chunks);
end;
$$;

-- Add (sign 1) or subtract (sign -1) the statistics of a set of chunk rows; the bounds only ever grow.
create or replace function promptly_fts_apply(rows_fts tsvector[], rows_length int[], sign int) returns void
language plpgsql as $$
begin
    if coalesce(cardinality(rows_fts), 0) = 0 then
        return;
    end if;
    insert into fts_lexemes as l (lexeme, df, max_tf, max_ratio)
    select u.lexeme, sign * count(*), max(t.tf), max(t.tf::float8 / greatest(v.len, 1))
    from unnest(rows_fts, rows_length) as v(fts, len), unnest(v.fts) as u,
         lateral (select coalesce(array_length(u.positions, 1), 1) as tf) as t
    group by u.lexeme order by u.lexeme
    on conflict (lexeme) do update set df = l.df + excluded.df,
                                       max_tf = greatest(l.max_tf, excluded.max_tf),
                                       max_ratio = greatest(l.max_ratio, excluded.max_ratio);
    delete from fts_lexemes where df <= 0;
    update fts_corpus set chunks = chunks + sign * cardinality(rows_fts),
                          tokens = tokens + sign * (select coalesce(sum(x), 0) from unnest(rows_length) as x);
end;
$$;

create or replace function promptly_fts_on_insert() returns trigger
language plpgsql as $$
begin
    perform 1 from fts_corpus where id for update;
    perform promptly_fts_apply((select array_agg(fts) from new_rows), (select array_agg(fts_length) from new_rows), 1);
    insert into fts_postings (lexeme, chunk_id, tf, dl)
    select u.lexeme, n.id, coalesce(array_length(u.positions, 1), 1), n.fts_length
    from new_rows n, unnest(n.fts) as u;
    return null;
end;
$$;

create or replace function promptly_fts_on_delete() returns trigger
language plpgsql as $$
begin
    perform 1 from fts_corpus where id for update;
    perform promptly_fts_apply((select array_agg(fts) from old_rows), (select array_agg(fts_length) from old_rows), -1);
    delete from fts_postings p using old_rows o, unnest(o.fts) as u
    where p.lexeme = u.lexeme and p.chunk_id = o.id;
    return null;
end;
$$;

create or replace function promptly_fts_on_update() returns trigger
language plpgsql as $$
begin
    perform 1 from fts_corpus where id for update;
    perform promptly_fts_apply((select array_agg(fts) from old_rows), (select array_agg(fts_length) from old_rows), -1);
    perform promptly_fts_apply((select array_agg(fts) from new_rows), (select array_agg(fts_length) from new_rows), 1);
    delete from fts_postings p using old_rows o, unnest(o.fts) as u
    where p.lexeme = u.lexeme and p.chunk_id = o.id;
    insert into fts_postings (lexeme, chunk_id, tf, dl)
    select u.lexeme, n.id, coalesce(array_length(u.positions, 1), 1), n.fts_length
    from new_rows n, unnest(n.fts) as u;
    return null;
end;
$$;

create or replace function promptly_fts_on_truncate() returns trigger
language plpgsql as $$
begin
    perform 1 from fts_corpus where id for update;
    delete from fts_lexemes;
    truncate fts_postings;
    update fts_corpus set chunks = 0, tokens = 0;
    return null;
end;
$$;

-- Fill the postings and bounds, then index them (one sorted build, faster than maintaining it row by row).
select promptly_fts_recount();
do $$
begin
    if not exists (select 1 from pg_constraint where conname = 'fts_postings_pkey') then
        alter table fts_postings add constraint fts_postings_pkey primary key (lexeme, chunk_id) include (tf, dl);
    end if;
end;
$$;
analyze fts_postings;
analyze fts_lexemes;

-- The exact top `match_count` chunks by BM25 (ties by id), as in 0007; see the header for the pruning.
create or replace function promptly_bm25(query_text text, match_count int, filter jsonb,
                                         k1 float default 1.2, b float default 0.75)
returns table (id uuid, score float)
language plpgsql stable
rows 20  -- match_count rows at most (5-20 as called): so match_chunks joins them to chunks by primary key
         -- (with the default estimate of 1000 rows the planner hashed a sequential scan of all the chunks)
set plan_cache_mode = force_custom_plan
as $$
#variable_conflict use_column
declare
    _lex text[];        -- the query's lexemes found in the corpus, by upper bound ascending
    _idf float8[];
    _ub float8[];       -- the most each lexeme can add to a chunk's score
    _df bigint[];
    _m int;
    _s int;             -- lexemes _s.._m are scored from their postings; 1.._s-1 only probed per candidate
    _kc float8;         -- tf / (tf + k1 * (1 - b + b * dl / avgdl)) = tf / (tf + _kc + _kd * dl)
    _kd float8;
    _below float8;      -- ub_1 + ... + ub_(_s-1): the best score of a chunk without any of _s.._m
    _theta float8;      -- the k-th best exact score among the candidates
    _ids uuid[];
    _scores float8[];
    _e bigint;
    _n bigint;
    _p int;
    _sum float8;
begin
    if coalesce(match_count, 0) <= 0 then
        return;
    end if;
    select array_agg(x.lexeme order by x.ub, x.lexeme), array_agg(x.idf order by x.ub, x.lexeme),
           array_agg(x.ub order by x.ub, x.lexeme), array_agg(x.df order by x.ub, x.lexeme),
           max(x.kc), max(x.kd)
    into _lex, _idf, _ub, _df, _kc, _kd
    from (
        select l.lexeme, l.df, i.idf, k1 * (1 - b) as kc, k1 * b / a.avgdl as kd,
               case when k1 >= 0 and b between 0 and 1 and l.max_tf >= 1 and l.max_ratio > 0
                    then i.idf / (1 + k1 * (1 - b) / l.max_tf + k1 * b / (l.max_ratio * a.avgdl))
                    else null end as ub
        from fts_lexemes l, fts_corpus s,
             lateral (select ln(1 + (s.chunks - l.df + 0.5)::float8 / (l.df + 0.5)) as idf) as i,
             lateral (select s.tokens::float8 / greatest(s.chunks, 1) as avgdl) as a
        where l.lexeme = any(tsvector_to_array(to_tsvector('english', coalesce(query_text, ''))))
    ) as x;
    _m := coalesce(cardinality(_lex), 0);
    if _m = 0 then
        return;
    end if;

    -- Start from the fewest rarest lexemes that can fill the top k at all.
    _s := _m;
    _e := _df[_m];
    while _s > 1 and _e < match_count loop
        _s := _s - 1;
        _e := _e + _df[_s];
    end loop;

    _n := 0;  -- every posting of the query's lexemes
    for _i in 1 .. _m loop
        _n := _n + _df[_i];
    end loop;
    -- A pass costs about its candidates' postings plus, at worst, one probe per candidate and common lexeme
    -- (measured: a probe costs ~6 times a posting read and summed); scoring every posting costs _n.
    while _s > 1 and array_position(_ub, null) is null and _e + 6 * _e * (_s - 1) < _n loop
        _below := 0;
        for _i in 1 .. _s - 1 loop
            _below := _below + _ub[_i];
        end loop;
        -- Score the candidates (chunks with any of _s.._m) from those lexemes' postings; a candidate whose
        -- partial score plus _below stays under the k-th best partial score cannot reach the top k (k others
        -- score at least that), so only the others are probed for lexemes 1.._s-1 to complete their scores.
        select array_agg(r.chunk_id order by r.sc desc, r.chunk_id), array_agg(r.sc order by r.sc desc, r.chunk_id)
        into _ids, _scores
        from (
            with part as materialized (
                select e.chunk_id, e.part
                from (select p.chunk_id, sum(q.idf * p.tf / (p.tf + _kc + _kd * p.dl)) as part
                      from unnest(_lex[_s:_m], _idf[_s:_m]) as q(lexeme, idf)
                      join fts_postings p on p.lexeme = q.lexeme
                      group by p.chunk_id) as e
                where filter = '{}'::jsonb
                   or exists (select 1 from chunks c where c.id = e.chunk_id and c.metadata @> filter)
            ),
            kth as (select part.part from part order by part.part desc limit 1 offset match_count - 1)
            select part.chunk_id,
                   part.part + coalesce((
                       select sum(n.idf * p.tf / (p.tf + _kc + _kd * p.dl))
                       from unnest(_lex[1:_s - 1], _idf[1:_s - 1]) as n(lexeme, idf)
                       join fts_postings p on p.lexeme = n.lexeme and p.chunk_id = part.chunk_id), 0) as sc
            from part
            where part.part + _below * (1 + 1e-9) >= coalesce((select kth.part from kth), 0)
            order by sc desc, part.chunk_id
            limit match_count
        ) as r;
        _theta := case when coalesce(cardinality(_ids), 0) >= match_count then _scores[match_count] else 0 end;
        if _below * (1 + 1e-9) < _theta then  -- no chunk outside the candidates can reach the top k
            raise debug 'promptly_bm25: pruned, % of % lexemes scored from postings', _m - _s + 1, _m;
            return query select u.chunk_id, u.sc from unnest(_ids, _scores) as u(chunk_id, sc);
            return;
        end if;
        -- The fewest lexemes that the k-th score found so far allows; the k-th score only grows as the
        -- candidates do, so the next pass ends the loop.
        _p := 0;
        _sum := 0;
        while _p < _s - 1 and (_sum + _ub[_p + 1]) * (1 + 1e-9) < _theta loop
            _p := _p + 1;
            _sum := _sum + _ub[_p];
        end loop;
        for _i in _p + 1 .. _s - 1 loop
            _e := _e + _df[_i];
        end loop;
        _s := _p + 1;
    end loop;

    raise debug 'promptly_bm25: every posting of % lexemes scored', _m;
    return query
    select e.chunk_id, e.sc
    from (select p.chunk_id, sum(q.idf * p.tf / (p.tf + _kc + _kd * p.dl)) as sc
          from unnest(_lex, _idf) as q(lexeme, idf)
          join fts_postings p on p.lexeme = q.lexeme
          group by p.chunk_id) as e
    where filter = '{}'::jsonb
       or exists (select 1 from chunks c where c.id = e.chunk_id and c.metadata @> filter)
    order by e.sc desc, e.chunk_id
    limit match_count;
end;
$$;

-- Row-level security as for the other statistics: everyone reads the postings, only the writer changes them.
alter table fts_postings enable row level security;
drop policy if exists fts_postings_read on fts_postings;
create policy fts_postings_read on fts_postings for select to anon, authenticated using (true);
revoke all on fts_postings from anon, authenticated;
grant select on fts_postings to anon, authenticated;
grant all on fts_postings to service_role;
grant execute on function promptly_bm25(text, int, jsonb, float, float) to anon, authenticated, service_role;
