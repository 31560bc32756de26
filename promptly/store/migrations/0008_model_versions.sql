-- Published model versions (`promptly publish`): one row per version of a repository, and the history
-- of activations, so that rollback knows where to go back to. Promote and rollback are single SQL
-- functions: over REST each rpc call is one transaction, and there is no other way to flip two rows
-- at once.

-- A version label (v1, v2, ...) is per repository, so the key is the pair.
alter table model_versions drop constraint if exists model_versions_pkey;
alter table model_versions add constraint model_versions_pkey primary key (repo_id, version);

-- Every activation, oldest first. Rollback undoes the newest activation that is not yet undone and
-- re-activates the one before it (a stack: promote v1, v2, v3; rollback -> v2; rollback -> v1).
create table if not exists model_version_activations (
    id            bigint generated always as identity primary key,
    repo_id       text not null,
    version       text not null,
    activated_at  timestamptz not null default now(),
    undone_at     timestamptz,
    foreign key (repo_id, version) references model_versions (repo_id, version) on delete cascade
);
create index if not exists model_version_activations_open on model_version_activations (id) where undone_at is null;

alter table model_version_activations enable row level security;
drop policy if exists model_version_activations_read on model_version_activations;
create policy model_version_activations_read on model_version_activations
    for select to anon, authenticated using (true);
-- Supabase grants every new table to the API roles by default: the anonymous roles may only read.
revoke all on model_version_activations from anon, authenticated;
grant select on model_version_activations to anon, authenticated;
grant all on model_version_activations to service_role;

-- Make one version the active one (the server loads it) and record the activation. Promoting the
-- version that is already active changes nothing. An unknown version raises no_data_found (P0002).
create or replace function promptly_promote_model_version(target_repo_id text, target_version text)
returns jsonb
language plpgsql as $$
declare
    chosen model_versions;
begin
    perform pg_advisory_xact_lock(hashtext('promptly_model_versions'));
    select * into chosen from model_versions where repo_id = target_repo_id and version = target_version;
    if not found then
        raise exception using errcode = 'P0002',
            message = format('there is no version %s of %s in model_versions', target_version, target_repo_id);
    end if;
    if not chosen.is_active then
        update model_versions set is_active = false where is_active;
        update model_versions set is_active = true where repo_id = target_repo_id and version = target_version
            returning * into chosen;
        insert into model_version_activations (repo_id, version) values (target_repo_id, target_version);
    end if;
    return to_jsonb(chosen);
end;
$$;

-- Undo the newest activation: the version active before it becomes active again.
create or replace function promptly_rollback_model_version()
returns jsonb
language plpgsql as $$
declare
    latest model_version_activations;
    earlier model_version_activations;
    chosen model_versions;
begin
    perform pg_advisory_xact_lock(hashtext('promptly_model_versions'));
    select * into latest from model_version_activations where undone_at is null order by id desc limit 1;
    if not found then
        raise exception using errcode = 'P0002', message = 'no version has been promoted: nothing to roll back';
    end if;
    select * into earlier from model_version_activations
        where undone_at is null and id < latest.id order by id desc limit 1;
    if not found then
        raise exception using errcode = 'P0002', message = format(
            'version %s of %s is the first one promoted: there is no earlier version to roll back to',
            latest.version, latest.repo_id);
    end if;
    update model_version_activations set undone_at = now() where id = latest.id;
    update model_versions set is_active = false where is_active;
    update model_versions set is_active = true where repo_id = earlier.repo_id and version = earlier.version
        returning * into chosen;
    return to_jsonb(chosen);
end;
$$;

revoke execute on function promptly_promote_model_version(text, text) from public, anon, authenticated;
revoke execute on function promptly_rollback_model_version() from public, anon, authenticated;
grant execute on function promptly_promote_model_version(text, text) to service_role;
grant execute on function promptly_rollback_model_version() to service_role;
