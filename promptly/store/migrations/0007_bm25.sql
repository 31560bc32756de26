-- BM25 ranking inside Postgres, without extensions (embedded server, any Postgres, Supabase alike).
--
-- What is indexed for text search is a chunk's context (its document title and heading path, kept by the
-- chunker in metadata->>'context') followed by its content. Each chunk's tsvector holds its term counts
-- (positions per lexeme) and `fts_length` its length in lexeme occurrences; two small tables hold the
-- corpus statistics BM25 needs:
--   fts_lexemes(lexeme, df)      in how many chunks each lexeme occurs
--   fts_corpus(chunks, tokens)   how many chunks there are and their total length (avgdl = tokens / chunks)
-- Statement-level triggers on `chunks` keep them exact: inserted rows add, deleted rows subtract, an
-- update does both, a truncate resets them, all in the writing transaction. Ingest replaces a changed
-- document by deleting and inserting its chunks in one transaction, and deleting a document cascades to
-- its chunks, so incremental re-ingest, deletes and cleanup keep the statistics equal to a recount
-- (`promptly_fts_recount()` rebuilds them from the chunks, for a store edited with triggers disabled).
-- Every trigger first locks the fts_corpus row, so concurrent writers take their locks in one order and
-- never deadlock; they queue on that row until the writing transaction ends.

create or replace function promptly_chunk_tsvector(metadata jsonb, content text) returns tsvector
language sql immutable parallel safe as $$
    select to_tsvector('english', coalesce(metadata->>'context', '') || E'\n' || content)
$$;

-- Lexeme occurrences in a tsvector: the BM25 document length (stop words are not counted, as in bm25s
-- with stop words removed). A tsvector keeps at most 256 positions per lexeme, far above a chunk's counts.
create or replace function promptly_tsvector_length(v tsvector) returns int
language sql immutable parallel safe as $$
    select coalesce(sum(coalesce(array_length(u.positions, 1), 1)), 0)::int from unnest(v) as u
$$;

alter table chunks drop column if exists fts;
alter table chunks add column fts tsvector generated always as (promptly_chunk_tsvector(metadata, content)) stored;
alter table chunks add column if not exists fts_length int
    generated always as (promptly_tsvector_length(promptly_chunk_tsvector(metadata, content))) stored;
create index if not exists chunks_fts_gin on chunks using gin (fts);

create table if not exists fts_lexemes (
    lexeme  text primary key,
    df      int not null
);
create table if not exists fts_corpus (
    id      boolean primary key default true check (id),
    chunks  bigint not null default 0,
    tokens  bigint not null default 0
);
insert into fts_corpus (id) values (true) on conflict (id) do nothing;

-- Rebuild the statistics from the chunks (also fills them for chunks stored before this migration).
create or replace function promptly_fts_recount() returns void
language plpgsql as $$
begin
    perform 1 from fts_corpus where id for update;
    delete from fts_lexemes;
    insert into fts_lexemes (lexeme, df)
    select u.lexeme, count(*) from chunks c, unnest(c.fts) as u group by u.lexeme;
    update fts_corpus set chunks = (select count(*) from chunks),
                          tokens = (select coalesce(sum(fts_length), 0) from chunks);
end;
$$;

-- Add (sign 1) or subtract (sign -1) the statistics of a set of chunk rows.
create or replace function promptly_fts_apply(rows_fts tsvector[], rows_length int[], sign int) returns void
language plpgsql as $$
begin
    if coalesce(cardinality(rows_fts), 0) = 0 then
        return;
    end if;
    insert into fts_lexemes as l (lexeme, df)
    select u.lexeme, sign * count(*) from unnest(rows_fts) as v(fts), unnest(v.fts) as u
    group by u.lexeme order by u.lexeme
    on conflict (lexeme) do update set df = l.df + excluded.df;
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
    return null;
end;
$$;

create or replace function promptly_fts_on_delete() returns trigger
language plpgsql as $$
begin
    perform 1 from fts_corpus where id for update;
    perform promptly_fts_apply((select array_agg(fts) from old_rows), (select array_agg(fts_length) from old_rows), -1);
    return null;
end;
$$;

create or replace function promptly_fts_on_update() returns trigger
language plpgsql as $$
begin
    perform 1 from fts_corpus where id for update;
    perform promptly_fts_apply((select array_agg(fts) from old_rows), (select array_agg(fts_length) from old_rows), -1);
    perform promptly_fts_apply((select array_agg(fts) from new_rows), (select array_agg(fts_length) from new_rows), 1);
    return null;
end;
$$;

create or replace function promptly_fts_on_truncate() returns trigger
language plpgsql as $$
begin
    perform 1 from fts_corpus where id for update;
    delete from fts_lexemes;
    update fts_corpus set chunks = 0, tokens = 0;
    return null;
end;
$$;

drop trigger if exists chunks_fts_insert on chunks;
create trigger chunks_fts_insert after insert on chunks
    referencing new table as new_rows for each statement execute function promptly_fts_on_insert();
drop trigger if exists chunks_fts_delete on chunks;
create trigger chunks_fts_delete after delete on chunks
    referencing old table as old_rows for each statement execute function promptly_fts_on_delete();
drop trigger if exists chunks_fts_update on chunks;
create trigger chunks_fts_update after update on chunks
    referencing old table as old_rows new table as new_rows for each statement execute function promptly_fts_on_update();
drop trigger if exists chunks_fts_truncate on chunks;
create trigger chunks_fts_truncate after truncate on chunks
    for each statement execute function promptly_fts_on_truncate();

select promptly_fts_recount();

-- BM25 (Lucene's variant, as bm25s's default): for each distinct query lexeme t found in chunk d,
--   idf(t) * tf / (tf + k1 * (1 - b + b * |d| / avgdl)),  idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5)).
-- Candidates come from the GIN index (any query lexeme, OR-ed); term counts from the tsvector cut down to
-- the query's lexemes (setweight marks them, ts_filter keeps them).
create or replace function promptly_bm25(query_text text, match_count int, filter jsonb,
                                         k1 float default 1.2, b float default 0.75)
returns table (id uuid, score float)
language plpgsql stable
set plan_cache_mode = force_custom_plan
as $$
declare
    lexemes text[];
    idfs float[];
    tsq tsquery;
    avgdl float;
begin
    -- The query's lexemes and their idf first, so that the tsquery is a constant when the ranking is planned
    -- (the GIN index cannot serve a tsquery computed inside the same statement).
    select array_agg(l.lexeme order by l.lexeme),
           array_agg(ln(1 + (s.chunks - l.df + 0.5) / (l.df + 0.5)) order by l.lexeme),
           string_agg(quote_literal(l.lexeme), ' | ')::tsquery,
           max(s.tokens::float / greatest(s.chunks, 1))
    into lexemes, idfs, tsq, avgdl
    from fts_lexemes l, fts_corpus s
    where l.lexeme = any(tsvector_to_array(to_tsvector('english', coalesce(query_text, ''))));
    if tsq is null then
        return;
    end if;
    return query
    select c.id,
           (select sum(q.idf * t.tf / (t.tf + k1 * (1 - b + b * c.fts_length / avgdl)))
            from (select u.lexeme, coalesce(array_length(u.positions, 1), 1)::float as tf
                  from unnest(ts_filter(setweight(setweight(c.fts, 'D'), 'A', lexemes), '{a}')) as u) as t
            join unnest(lexemes, idfs) as q(lexeme, idf) on q.lexeme = t.lexeme) as score
    from chunks c
    where c.fts @@ tsq and c.metadata @> filter
    order by score desc, c.id
    limit match_count;
end;
$$;

-- Vector, text (BM25) or hybrid search; one function for psycopg and Supabase's rpc(). Hybrid fuses the
-- top `candidates` of each ranking by reciprocal rank fusion: sum of weight / (rrf_k + rank). The defaults
-- were tuned on the non-held-out questions of benchmarks/retrieval_quality.py (never on its held-out ones).
-- plan_cache_mode: PL/pgSQL switches to a generic plan after five calls, and a generic plan cannot see the
-- LIMIT or the filter, so it gave up the HNSW index for a full sort of the table.
drop function if exists match_chunks(vector, text, int, jsonb, text, float, float, int);
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
    bm25_b float default 0.75
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
    if filter <> '{}'::jsonb then  -- keep scanning the HNSW graph until enough rows pass the filter
        perform set_config('hnsw.iterative_scan', 'relaxed_order', true);
    end if;

    if mode = 'vector' then
        return query
        select c.id, c.document_id, c.ordinal, c.content, c.metadata,
               (1 - (c.embedding <=> query_embedding))::float as score
        from chunks c
        where c.metadata @> filter
        order by c.embedding <=> query_embedding
        limit match_count;
    elsif mode = 'text' then
        return query
        select c.id, c.document_id, c.ordinal, c.content, c.metadata, r.score
        from promptly_bm25(query_text, match_count, filter, bm25_k1, bm25_b) r join chunks c on c.id = r.id
        order by r.score desc, c.id;
    else
        return query
        with full_text as (
            select r.id, row_number() over (order by r.score desc, r.id) as rank_ix
            from promptly_bm25(query_text, depth, filter, bm25_k1, bm25_b) r
        ),
        semantic as (
            select s.id, row_number() over (order by s.distance, s.id) as rank_ix
            from (select c.id, c.embedding <=> query_embedding as distance
                  from chunks c
                  where c.metadata @> filter
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

-- Row-level security as for the other tables: everyone reads the statistics, only the writer changes them.
alter table fts_lexemes enable row level security;
alter table fts_corpus enable row level security;
drop policy if exists fts_lexemes_read on fts_lexemes;
create policy fts_lexemes_read on fts_lexemes for select to anon, authenticated using (true);
drop policy if exists fts_corpus_read on fts_corpus;
create policy fts_corpus_read on fts_corpus for select to anon, authenticated using (true);
revoke all on fts_lexemes, fts_corpus from anon, authenticated;
grant select on fts_lexemes, fts_corpus to anon, authenticated;
grant all on fts_lexemes, fts_corpus to service_role;
grant execute on function match_chunks(vector, text, int, jsonb, text, float, float, int, int, float, float)
    to anon, authenticated, service_role;
grant execute on function promptly_bm25(text, int, jsonb, float, float) to anon, authenticated, service_role;
