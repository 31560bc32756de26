-- Conversations from `promptly serve`, with the user's feedback: liked ones become training examples,
-- disliked ones are exported for review. They hold user data, so unlike the other tables the anonymous
-- role may add a conversation but never read one; only the service role reads.
create table if not exists conversations (
    id             uuid primary key,
    question       text not null,
    answer         text not null,
    chunk_ids      uuid[] not null default '{}',
    feedback       text check (feedback in ('up', 'down')),
    model_version  text,
    created_at     timestamptz not null default now()
);
create index if not exists conversations_feedback on conversations (feedback, created_at);

alter table conversations enable row level security;
drop policy if exists conversations_insert on conversations;
create policy conversations_insert on conversations for insert to anon, authenticated with check (true);

-- Supabase grants every new table to the API roles by default privileges: take that back, then give
-- the anonymous roles INSERT alone (the id is made by the client, so no RETURNING is needed).
revoke all on conversations from anon, authenticated;
grant insert on conversations to anon, authenticated;
grant all on conversations to service_role;

-- Feedback arrives later from the same anonymous client, which cannot read (and so cannot UPDATE ...
-- WHERE) the table: this function sets one conversation's feedback, and knowing its id is the right to.
create or replace function promptly_set_feedback(conversation_id uuid, new_feedback text)
returns boolean
language plpgsql security definer set search_path = public as $$
begin
    if new_feedback is not null and new_feedback not in ('up', 'down') then
        raise exception 'feedback must be up, down or null, got %', new_feedback;
    end if;
    update conversations set feedback = new_feedback where id = conversation_id;
    return found;
end;
$$;
revoke execute on function promptly_set_feedback(uuid, text) from public;
grant execute on function promptly_set_feedback(uuid, text) to anon, authenticated, service_role;
