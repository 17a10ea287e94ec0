-- 005_write_path: cheaper writes for the projections (engine/projection.c).
--
-- Identifiers compare byte by byte.  Every text column named *_id (tenant,
-- customer, conversation, event, key ids) gets the "C" collation: they are
-- opaque identifiers, so a locale's rules mean nothing for them, and every
-- index insert and ON CONFLICT check of a view row compared them through
-- strcoll.  In a C.UTF-8 database the order does not change (code point
-- order is byte order for UTF-8); elsewhere the keyset cursors simply
-- follow byte order from now on.  Columns of other collations compare
-- with these as before: a column's "C" wins over the default collation of
-- a parameter or an unnested array.
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT table_name, column_name
          FROM information_schema.columns
         WHERE table_schema = current_schema()
           AND data_type = 'text'
           AND column_name LIKE '%\_id'
           AND table_name <> 'schema_migrations'
         ORDER BY table_name, column_name
    LOOP
        EXECUTE format('ALTER TABLE %I ALTER COLUMN %I TYPE text COLLATE "C"',
                       c.table_name, c.column_name);
    END LOOP;
END
$$;

-- Nothing filters or joins on a view row's body, and ANALYZE sorting the
-- jsonb of fast-growing views was a twentieth of the database's work.
ALTER TABLE view_agent        ALTER COLUMN body SET STATISTICS 0;
ALTER TABLE view_web          ALTER COLUMN body SET STATISTICS 0;
ALTER TABLE view_app          ALTER COLUMN body SET STATISTICS 0;
ALTER TABLE view_mini_program ALTER COLUMN body SET STATISTICS 0;
ALTER TABLE view_wechat       ALTER COLUMN body SET STATISTICS 0;
ALTER TABLE view_douyin       ALTER COLUMN body SET STATISTICS 0;
ALTER TABLE view_phone        ALTER COLUMN body SET STATISTICS 0;
