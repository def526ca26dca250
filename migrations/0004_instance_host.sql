-- The host of each live instance: a dual-mode start refuses while an instance on another host is live
-- (store-modes.md §2); on the same host the data dir lock already decides, and a killed instance's row must not
-- block its own restart for 15 s.
alter table store_instances add column host text null;
