-- Search and write functions shared by psycopg and Supabase's rpc().

-- The dimension the chunks table was built with, so a client can refuse a mismatched embedder.
create or replace function promptly_embedding_dim() returns int
language sql stable as $$
    select atttypmod from pg_attribute
    where attrelid = 'public.chunks'::regclass and attname = 'embedding'
$$;

-- Vector, full-text or hybrid search. Hybrid fuses the two rankings by reciprocal rank fusion
-- (score = sum of weight / (rrf_k + rank)), as in Supabase's hybrid-search guide. Full-text
-- matching ORs the query's lexemes so that a natural-language question still matches.
create or replace function match_chunks(
    query_embedding vector,
    query_text text default '',
    match_count int default 5,
    filter jsonb default '{}'::jsonb,
    mode text default 'hybrid',
    full_text_weight float default 1.0,
    semantic_weight float default 1.0,
    rrf_k int default 50
)
returns table (
    id uuid, document_id text, ordinal int, content text, metadata jsonb, score float
)
language plpgsql stable as $$
declare
    q tsquery;
begin
    if mode not in ('vector', 'text', 'hybrid') then
        raise exception 'match_chunks: mode must be vector, text or hybrid, got %', mode;
    end if;
    q := nullif(replace(plainto_tsquery('english', coalesce(query_text, ''))::text, ' & ', ' | '), '');

    if mode = 'vector' then
        return query
        select c.id, c.document_id, c.ordinal, c.content, c.metadata,
               (1 - (c.embedding <=> query_embedding))::float as score
        from chunks c
        where c.metadata @> filter
        order by c.embedding <=> query_embedding
        limit match_count;
    elsif mode = 'text' then
        if q is null then
            return;
        end if;
        return query
        select c.id, c.document_id, c.ordinal, c.content, c.metadata,
               ts_rank_cd(c.fts, q::tsquery)::float as score
        from chunks c
        where c.fts @@ q::tsquery and c.metadata @> filter
        order by score desc, c.id
        limit match_count;
    else
        return query
        with full_text as (
            select c.id, row_number() over (order by ts_rank_cd(c.fts, q::tsquery) desc, c.id) as rank_ix
            from chunks c
            where q is not null and c.fts @@ q::tsquery and c.metadata @> filter
            order by rank_ix
            limit least(match_count, 30) * 2
        ),
        semantic as (
            select c.id, row_number() over (order by c.embedding <=> query_embedding) as rank_ix
            from chunks c
            where c.metadata @> filter
            order by rank_ix
            limit least(match_count, 30) * 2
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

-- Replace one document and all its chunks in a single transaction (one rpc call is one transaction
-- in PostgREST), so a failure never leaves half a document behind.
create or replace function promptly_upsert_document(doc jsonb, new_chunks jsonb)
returns int
language plpgsql as $$
declare
    written int;
begin
    insert into documents (id, source, uri, title, content_hash, metadata, ingested_at)
    values (doc->>'id', doc->>'source', doc->>'uri', doc->>'title', doc->>'content_hash',
            coalesce(doc->'metadata', '{}'::jsonb), now())
    on conflict (id) do update set
        source = excluded.source, uri = excluded.uri, title = excluded.title,
        content_hash = excluded.content_hash, metadata = excluded.metadata, ingested_at = now();
    delete from chunks where document_id = doc->>'id';
    insert into chunks (id, document_id, ordinal, content, token_count, metadata, embedding)
    select (x->>'id')::uuid, doc->>'id', (x->>'ordinal')::int, x->>'content', (x->>'token_count')::int,
           coalesce(x->'metadata', '{}'::jsonb), (x->>'embedding')::vector
    from jsonb_array_elements(new_chunks) as x;
    get diagnostics written = row_count;
    return written;
end;
$$;
