"""`promptly publish`: the best run, exported and carded, pushed as a numbered version; promote and rollback."""
