-- Where each QA pair came from: the QA file beside the corpus ('file', the default for rows stored
-- before this migration) or `promptly qa generate` ('generated'). With it a re-ingest removes the
-- file's pairs that were deleted from the file, and `qa generate` with `qa.regenerate=true` replaces
-- its own earlier pairs of a chunk, while neither ever touches the other's rows.
alter table qa_pairs add column if not exists origin text not null default 'file';
alter table qa_pairs drop constraint if exists qa_pairs_origin_check;
alter table qa_pairs add constraint qa_pairs_origin_check check (origin in ('file', 'generated'));
create index if not exists qa_pairs_origin on qa_pairs (origin, document_id);
