-- Core tables. {{embedding_dim}} is filled in from the configured embedder when the migration runs.
create extension if not exists vector;

create table if not exists documents (
    id            text primary key,
    source        text not null,
    uri           text not null,
    title         text not null,
    content_hash  text not null,
    metadata      jsonb not null default '{}'::jsonb,
    ingested_at   timestamptz not null default now()
);

create table if not exists chunks (
    id           uuid primary key,
    document_id  text not null references documents (id) on delete cascade,
    ordinal      int not null,
    content      text not null,
    token_count  int not null,
    metadata     jsonb not null default '{}'::jsonb,
    embedding    vector({{embedding_dim}}) not null,
    fts          tsvector generated always as (to_tsvector('english', content)) stored,
    unique (document_id, ordinal)
);

create index if not exists chunks_embedding_hnsw on chunks using hnsw (embedding vector_cosine_ops);
create index if not exists chunks_metadata_gin on chunks using gin (metadata);
create index if not exists chunks_fts_gin on chunks using gin (fts);
create index if not exists chunks_document_id on chunks (document_id);

create table if not exists qa_pairs (
    id           uuid primary key,
    question     text not null,
    answer       text not null,
    document_id  text not null references documents (id) on delete cascade,
    chunk_ids    uuid[] not null default '{}',
    split        text not null check (split in ('train', 'validation', 'test')),
    created_at   timestamptz not null default now()
);
create index if not exists qa_pairs_split on qa_pairs (split);
create index if not exists qa_pairs_document_id on qa_pairs (document_id);

create table if not exists model_versions (
    version     text primary key,
    repo_id     text not null,
    revision    text,
    metrics     jsonb not null default '{}'::jsonb,
    config      jsonb not null default '{}'::jsonb,
    created_at  timestamptz not null default now(),
    is_active   boolean not null default false
);
-- At most one active version: what the server loads.
create unique index if not exists model_versions_one_active on model_versions (is_active) where is_active;
