-- Users' uploads are private from Supabase's public keys too. 0003 let the anon and authenticated roles read every
-- row, so anyone holding the project's anon key could read another user's uploaded chunks straight from
-- /rest/v1/chunks, whatever match_chunks' viewer rule does. Those roles now read only rows without an owner;
-- the service role (the server, which applies the viewer rule per request) bypasses row-level security.
drop policy if exists documents_read on documents;
create policy documents_read on documents for select to anon, authenticated
    using (coalesce(metadata->>'owner', '') = '');
drop policy if exists chunks_read on chunks;
create policy chunks_read on chunks for select to anon, authenticated
    using (coalesce(metadata->>'owner', '') = '');
