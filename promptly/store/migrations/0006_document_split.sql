-- Each document's split (train / validation / test), fixed at ingest by a seeded hash of its id and
-- stored here, so every later stage reads it instead of re-drawing it: the QA pairs, generated pairs,
-- the datamodule's chunk text (data=causal_lm) and liked conversations all follow the document.
-- NULL only for documents stored before this migration until the next ingest fills it in.
alter table documents add column if not exists split text;
alter table documents drop constraint if exists documents_split_check;
alter table documents add constraint documents_split_check check (split in ('train', 'validation', 'test'));

-- The REST write path (Supabase) writes the split with the rest of the document, atomically.
create or replace function promptly_upsert_document(doc jsonb, new_chunks jsonb)
returns int
language plpgsql as $$
declare
    written int;
begin
    insert into documents (id, source, uri, title, content_hash, metadata, split, ingested_at)
    values (doc->>'id', doc->>'source', doc->>'uri', doc->>'title', doc->>'content_hash',
            coalesce(doc->'metadata', '{}'::jsonb), doc->>'split', now())
    on conflict (id) do update set
        source = excluded.source, uri = excluded.uri, title = excluded.title,
        content_hash = excluded.content_hash, metadata = excluded.metadata, split = excluded.split,
        ingested_at = now();
    delete from chunks where document_id = doc->>'id';
    insert into chunks (id, document_id, ordinal, content, token_count, metadata, embedding)
    select (x->>'id')::uuid, doc->>'id', (x->>'ordinal')::int, x->>'content', (x->>'token_count')::int,
           coalesce(x->'metadata', '{}'::jsonb), (x->>'embedding')::vector
    from jsonb_array_elements(new_chunks) as x;
    get diagnostics written = row_count;
    return written;
end;
$$;

-- Unchanged documents whose split rule changed (or that predate this migration) get their split
-- without being re-chunked or re-embedded. `splits` maps document id to split; returns rows changed.
create or replace function promptly_set_document_splits(splits jsonb)
returns int
language plpgsql as $$
declare
    changed int;
begin
    update documents d set split = s.value
    from jsonb_each_text(splits) as s
    where d.id = s.key and d.split is distinct from s.value;
    get diagnostics changed = row_count;
    return changed;
end;
$$;
revoke execute on function promptly_set_document_splits(jsonb) from public, anon, authenticated;
grant execute on function promptly_set_document_splits(jsonb) to service_role;
