-- A QA pair's split is its document's split, whoever made the pair: when a changed split rule re-splits
-- documents (promptly_set_document_splits), their pairs move with them, generated pairs included (the
-- QA file's pairs are re-read at ingest, but `promptly qa generate`'s are not), so no document is ever
-- in two splits.
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
    update qa_pairs q set split = s.value
    from jsonb_each_text(splits) as s
    where q.document_id = s.key and q.split is distinct from s.value;
    return changed;
end;
$$;
revoke execute on function promptly_set_document_splits(jsonb) from public, anon, authenticated;
grant execute on function promptly_set_document_splits(jsonb) to service_role;

-- Pairs a re-split left behind before this migration.
update qa_pairs q set split = d.split
from documents d
where q.document_id = d.id and d.split is not null and q.split is distinct from d.split;
