-- Row-level security as on Supabase: the anonymous role reads, only the service role writes.
-- On plain Postgres the Supabase roles do not exist, so they are created (without login).
do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'anon') then
        create role anon nologin noinherit;
    end if;
    if not exists (select 1 from pg_roles where rolname = 'authenticated') then
        create role authenticated nologin noinherit;
    end if;
    if not exists (select 1 from pg_roles where rolname = 'service_role') then
        create role service_role nologin noinherit bypassrls;
    end if;
end
$$;

alter table documents enable row level security;
alter table chunks enable row level security;
alter table qa_pairs enable row level security;
alter table model_versions enable row level security;

drop policy if exists documents_read on documents;
create policy documents_read on documents for select to anon, authenticated using (true);
drop policy if exists chunks_read on chunks;
create policy chunks_read on chunks for select to anon, authenticated using (true);
drop policy if exists qa_pairs_read on qa_pairs;
create policy qa_pairs_read on qa_pairs for select to anon, authenticated using (true);
drop policy if exists model_versions_read on model_versions;
create policy model_versions_read on model_versions for select to anon, authenticated using (true);

grant usage on schema public to anon, authenticated, service_role;
grant select on documents, chunks, qa_pairs, model_versions to anon, authenticated;
grant select on promptly_migrations to anon, authenticated, service_role;
grant all on documents, chunks, qa_pairs, model_versions to service_role;
grant execute on function match_chunks(vector, text, int, jsonb, text, float, float, int)
    to anon, authenticated, service_role;
grant execute on function promptly_embedding_dim() to anon, authenticated, service_role;
revoke execute on function promptly_upsert_document(jsonb, jsonb) from public, anon, authenticated;
grant execute on function promptly_upsert_document(jsonb, jsonb) to service_role;
