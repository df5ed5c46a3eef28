//! Multi-row inserts: many rows of one table in few statements, each statement cached.
//!
//! A batch of rows goes in as inserts of 64, 32, 16 … 1 rows ([`chunks`]): one statement per
//! chunk instead of one per row (on PostgreSQL one round trip per chunk), and at most seven
//! distinct statements per table for the prepared-statement cache. Each size goes through a
//! fixed-size array: diesel caches the prepared statement of an array insert (its query id is
//! static) but prepares a slice insert anew every time, and on SQLite preparing a 17-column
//! insert costs several times more than running it.

/// Most rows in one `INSERT`: 64 rows of 17 columns are 1,088 bound values, far below SQLite's
/// limit (32,766) and PostgreSQL's (65,535).
pub(crate) const MAX_ROWS_PER_INSERT: usize = 64;

/// `rows` as chunks of 64, 32, 16 … 1 rows, in order, each row in exactly one chunk.
pub(crate) fn chunks<T>(rows: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut size = MAX_ROWS_PER_INSERT;
        while size > rest.len() {
            size /= 2;
        }
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        Some(chunk)
    })
}

/// A chunk not made by [`chunks`] (never).
pub(crate) fn wrong_size() -> diesel::result::Error {
    diesel::result::Error::QueryBuilderError(
        "multi-row insert: a chunk of an unexpected size".into(),
    )
}

/// Defines `fn $name(conn: &mut AnyConnection, rows: &[$row]) -> QueryResult<usize>`, which
/// inserts `rows` into `$table` in [`chunks`], each chunk one cached statement on the
/// backend's own connection (diesel's multi-backend connection has no multi-row insert), and
/// answers how many rows were inserted.
macro_rules! multi_row_insert {
    ($(#[$doc:meta])* $name:ident, $table:path, $row:ty) => {
        $(#[$doc])*
        pub(crate) fn $name(
            conn: &mut $crate::connection::AnyConnection,
            rows: &[$row],
        ) -> diesel::QueryResult<usize> {
            fn array<const N: usize>(
                conn: &mut $crate::connection::AnyConnection,
                rows: &[$row],
            ) -> diesel::QueryResult<usize> {
                use diesel::RunQueryDsl as _;
                let rows = <&[$row; N]>::try_from(rows)
                    .map_err(|_| $crate::multi_row::wrong_size())?;
                $crate::connection::on_backend!(conn, |c| diesel::insert_into($table)
                    .values(rows)
                    .execute(c))
            }
            let mut inserted = 0;
            for chunk in $crate::multi_row::chunks(rows) {
                inserted += match chunk.len() {
                    64 => array::<64>(conn, chunk),
                    32 => array::<32>(conn, chunk),
                    16 => array::<16>(conn, chunk),
                    8 => array::<8>(conn, chunk),
                    4 => array::<4>(conn, chunk),
                    2 => array::<2>(conn, chunk),
                    1 => array::<1>(conn, chunk),
                    _ => Err($crate::multi_row::wrong_size()),
                }?;
            }
            Ok(inserted)
        }
    };
}

multi_row_insert!(
    /// Inserts conversations in multi-row statements.
    insert_conversations,
    crate::schema::conversations::table,
    crate::history_rows::ConversationRow
);

multi_row_insert!(
    /// Inserts messages in multi-row statements: a turn's question and answer in one, a
    /// group commit's turns in a few.
    insert_messages,
    crate::schema::messages::table,
    crate::history_rows::MessageRow
);

multi_row_insert!(
    /// Inserts runs in multi-row statements: the run log's batches and a group commit's.
    insert_runs,
    crate::schema::runs::table,
    crate::history_rows::RunRow
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_row_once_in_powers_of_two() {
        for n in 0..300 {
            let rows: Vec<usize> = (0..n).collect();
            let sizes: Vec<usize> = chunks(&rows).map(<[usize]>::len).collect();
            assert_eq!(sizes.iter().sum::<usize>(), n);
            assert!(
                sizes
                    .iter()
                    .all(|s| s.is_power_of_two() && *s <= MAX_ROWS_PER_INSERT)
            );
            let again: Vec<usize> = chunks(&rows).flatten().copied().collect();
            assert_eq!(again, rows);
        }
    }
}
