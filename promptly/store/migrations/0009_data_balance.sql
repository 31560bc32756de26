-- The data-balance check (`promptly bias`, and the check before training): documents, chunks and QA
-- pairs per source, per owner (the document metadata key given) and per document. One SQL function, so
-- psycopg and Supabase's rpc count the same way; one jsonb value, so REST's row cap never cuts it short.
create or replace function promptly_data_balance(owner_key text default 'owner')
returns jsonb
language sql stable as $$
    with chunk_counts as (
        select document_id, count(*) as n from chunks group by document_id
    ), qa_counts as (
        select document_id, count(*) as n from qa_pairs group by document_id
    ), per_document as (
        select d.id, d.source, coalesce(d.metadata ->> owner_key, '') as owner,
               coalesce(c.n, 0) as chunks, coalesce(q.n, 0) as qa_pairs
        from documents d
        left join chunk_counts c on c.document_id = d.id
        left join qa_counts q on q.document_id = d.id
    ), grouped as (
        select 'source' as dimension, source as grp, count(*) as documents, sum(chunks) as chunks,
               sum(qa_pairs) as qa_pairs
        from per_document group by source
        union all
        select 'owner', owner, count(*), sum(chunks), sum(qa_pairs) from per_document group by owner
        union all
        select 'document', id, 1, chunks, qa_pairs from per_document
    )
    select coalesce(jsonb_agg(jsonb_build_object('dimension', dimension, 'group', grp, 'documents', documents,
                                                 'chunks', chunks, 'qa_pairs', qa_pairs)
                              order by dimension, grp), '[]'::jsonb)
    from grouped;
$$;
