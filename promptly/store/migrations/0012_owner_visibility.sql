-- Owner visibility inside the search: a chunk whose metadata names an `owner` (a user's upload) is seen only
-- by that owner, and the rows nobody else may see are left out BEFORE ranking, in every mode.
--
-- Why: the server used to fetch k + serve.private_overfetch rows and drop other owners' rows in Python, so one
-- user's 7,604 uploaded chunks on a popular topic filled the whole top k and everyone else got 0 results.
--
-- match_chunks(..., viewer text default null):
--   viewer null      no owner restriction: the offline verbs (eval, qa, training data) see every chunk;
--   viewer ''        an anonymous requester: only chunks without an owner;
--   viewer 'alice'   chunks without an owner, plus alice's.
-- The rule is one expression, written inline in the BM25 candidate probe and as promptly_visible() in the
-- vector rankings (see that function for why):
--   viewer is null or metadata->>'owner' is null or metadata->>'owner' = viewer
--
-- vector:  the HNSW index stays the access path. pgvector 0.8's iterative index scan (hnsw.iterative_scan =
--          relaxed_order) keeps walking the graph until `match_count` rows pass the filter, instead of stopping
--          after ef_search candidates; hnsw.max_scan_tuples is raised from 20,000 so that a large private upload
--          nearer to the query than any public chunk still leaves k public rows. relaxed_order may return the
--          rows slightly out of order, so they are sorted again by distance.
-- text:    promptly_bm25 applies the rule where 0011 applied `filter`, to the candidates before the k-th score is
--          taken, so the pruning stays exact over the visible chunks (other owners' rows can neither fill the top k
--          nor raise the threshold). When no chunk has an owner the per-candidate probe is skipped; otherwise it
--          is one primary-key probe per candidate (`offset 0` keeps the planner from hashing the whole chunks
--          table instead, which it costed cheaper from its estimate of the candidates, often 100 times too high).
-- hybrid:  both rankings above, each already restricted, then fused as before.

-- The rule as a function, for the vector rankings' WHERE: PL/pgSQL is never inlined, so the planner gives it a
-- function's default selectivity (1/3) and keeps the HNSW index scan with its LIMIT. Inlined, the planner
-- guessed from no statistics that the rule keeps 1 % of the rows, and sorted the whole table instead; with
-- statistics on the owner expression it also turned the BM25 per-candidate probes into a hashed scan of all
-- the chunks. How many rows the rule really keeps, the iterative index scan finds out as it goes.
create or replace function promptly_visible(metadata jsonb, viewer text) returns boolean
language plpgsql immutable parallel safe as $$
begin
    return viewer is null or metadata->>'owner' is null or metadata->>'owner' = viewer;
end;
$$;

-- The exact top `match_count` chunks by BM25 among those `filter` and `viewer` let through (ties by id); the
-- pruning is 0011's, over the visible chunks only.
drop function if exists promptly_bm25(text, int, jsonb, float, float);
create or replace function promptly_bm25(query_text text, match_count int, filter jsonb,
                                         k1 float default 1.2, b float default 0.75, viewer text default null)
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
    _scoped boolean;    -- whether a candidate must be checked against filter and viewer at all
begin
    if coalesce(match_count, 0) <= 0 then
        return;
    end if;
    -- No chunk has an owner (the GIN index on metadata answers): the viewer changes nothing, skip its probes.
    _scoped := filter <> '{}'::jsonb
               or (viewer is not null and exists (select 1 from chunks o where o.metadata ? 'owner'));
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
                where not _scoped
                   or exists (select 1 from chunks c where c.id = e.chunk_id and c.metadata @> filter
                              and (viewer is null or c.metadata->>'owner' is null
                                   or c.metadata->>'owner' = viewer)
                              offset 0)  -- one primary-key probe per candidate, never a hash of all chunks
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
    where not _scoped
       or exists (select 1 from chunks c where c.id = e.chunk_id and c.metadata @> filter
                  and (viewer is null or c.metadata->>'owner' is null or c.metadata->>'owner' = viewer)
                  offset 0)
    order by e.sc desc, e.chunk_id
    limit match_count;
end;
$$;

-- Vector, text (BM25) or hybrid search, as in 0007, plus `viewer` (see the header).
-- plan_cache_mode: a generic plan cannot see the LIMIT or the filter, and would give up the HNSW index.
drop function if exists match_chunks(vector, text, int, jsonb, text, float, float, int, int, float, float);
create or replace function match_chunks(
    query_embedding vector,
    query_text text default '',
    match_count int default 5,
    filter jsonb default '{}'::jsonb,
    mode text default 'hybrid',
    full_text_weight float default 1.0,
    semantic_weight float default 0.75,
    rrf_k int default 10,
    candidates int default 20,
    bm25_k1 float default 1.2,
    bm25_b float default 0.75,
    viewer text default null
)
returns table (
    id uuid, document_id text, ordinal int, content text, metadata jsonb, score float
)
language plpgsql stable
set plan_cache_mode = force_custom_plan
as $$
declare
    depth int := greatest(match_count, candidates);
begin
    if mode not in ('vector', 'text', 'hybrid') then
        raise exception 'match_chunks: mode must be vector, text or hybrid, got %', mode;
    end if;
    if depth > 40 then  -- the HNSW scan returns at most ef_search rows (pgvector's default 40)
        perform set_config('hnsw.ef_search', least(depth, 1000)::text, true);
    end if;
    if filter <> '{}'::jsonb or viewer is not null then
        -- keep scanning the HNSW graph until enough rows pass the filter and the viewer rule
        perform set_config('hnsw.iterative_scan', 'relaxed_order', true);
        perform set_config('hnsw.max_scan_tuples', '1000000', true);
    end if;

    if mode = 'vector' then
        return query
        select v.id, v.document_id, v.ordinal, v.content, v.metadata, (1 - v.distance)::float as score
        from (select c.id, c.document_id, c.ordinal, c.content, c.metadata,
                     c.embedding <=> query_embedding as distance
              from chunks c
              where c.metadata @> filter
                and (viewer is null or promptly_visible(c.metadata, viewer))
              order by c.embedding <=> query_embedding
              limit match_count) v
        order by v.distance, v.id;
    elsif mode = 'text' then
        return query
        select c.id, c.document_id, c.ordinal, c.content, c.metadata, r.score
        from promptly_bm25(query_text, match_count, filter, bm25_k1, bm25_b, viewer) r join chunks c on c.id = r.id
        order by r.score desc, c.id;
    else
        return query
        with full_text as (
            select r.id, row_number() over (order by r.score desc, r.id) as rank_ix
            from promptly_bm25(query_text, depth, filter, bm25_k1, bm25_b, viewer) r
        ),
        semantic as (
            select s.id, row_number() over (order by s.distance, s.id) as rank_ix
            from (select c.id, c.embedding <=> query_embedding as distance
                  from chunks c
                  where c.metadata @> filter
                    and (viewer is null or promptly_visible(c.metadata, viewer))
                  order by c.embedding <=> query_embedding
                  limit depth) s
        ),
        fused as (
            select coalesce(f.id, s.id) as id,
                   coalesce(1.0 / (rrf_k + f.rank_ix), 0.0) * full_text_weight
                 + coalesce(1.0 / (rrf_k + s.rank_ix), 0.0) * semantic_weight as score
            from full_text f full outer join semantic s on f.id = s.id
        )
        select c.id, c.document_id, c.ordinal, c.content, c.metadata, fused.score::float
        from fused join chunks c on c.id = fused.id
        order by fused.score desc, c.id
        limit match_count;
    end if;
end;
$$;

grant execute on function match_chunks(vector, text, int, jsonb, text, float, float, int, int, float, float, text)
    to anon, authenticated, service_role;
grant execute on function promptly_bm25(text, int, jsonb, float, float, text) to anon, authenticated, service_role;
grant execute on function promptly_visible(jsonb, text) to anon, authenticated, service_role;
