//! Conversions between the WIT `parameter-value`/`db-value` types and MySQL values.
//!
//! The column's declared type decides the WIT type, whatever protocol carried the value:
//! statements without parameters use MySQL's text protocol (every value arrives as text) and
//! prepared statements the binary protocol (typed values), and a guest must see the same
//! `int32` for an `INT` column either way.

use mysql_async::Value;
use mysql_async::consts::{ColumnFlags, ColumnType};

use crate::bindings::mysql::{Column, DbDataType, DbValue, ParameterValue};

/// MySQL's character set number for binary data (BLOB, BINARY, VARBINARY).
const BINARY_CHARSET: u16 = 63;

/// A parameter as MySQL takes it. Booleans are TINYINT, as MySQL stores them.
pub(super) fn parameter(value: ParameterValue) -> Value {
    match value {
        ParameterValue::Boolean(b) => Value::Int(i64::from(b)),
        ParameterValue::Int8(n) => Value::Int(n.into()),
        ParameterValue::Int16(n) => Value::Int(n.into()),
        ParameterValue::Int32(n) => Value::Int(n.into()),
        ParameterValue::Int64(n) => Value::Int(n),
        ParameterValue::Uint8(n) => Value::UInt(n.into()),
        ParameterValue::Uint16(n) => Value::UInt(n.into()),
        ParameterValue::Uint32(n) => Value::UInt(n.into()),
        ParameterValue::Uint64(n) => Value::UInt(n),
        ParameterValue::Floating32(n) => Value::Float(n),
        ParameterValue::Floating64(n) => Value::Double(n),
        ParameterValue::Str(text) => Value::Bytes(text.into_bytes()),
        ParameterValue::Binary(bytes) => Value::Bytes(bytes),
        ParameterValue::DbNull => Value::NULL,
    }
}

/// The WIT type of a column.
pub(super) fn data_type(column: &mysql_async::Column) -> DbDataType {
    let unsigned = column.flags().contains(ColumnFlags::UNSIGNED_FLAG);
    match (column.column_type(), unsigned) {
        (ColumnType::MYSQL_TYPE_TINY, false) => DbDataType::Int8,
        (ColumnType::MYSQL_TYPE_TINY, true) => DbDataType::Uint8,
        (ColumnType::MYSQL_TYPE_SHORT, false) => DbDataType::Int16,
        (ColumnType::MYSQL_TYPE_SHORT | ColumnType::MYSQL_TYPE_YEAR, _) => DbDataType::Uint16,
        (ColumnType::MYSQL_TYPE_INT24 | ColumnType::MYSQL_TYPE_LONG, false) => DbDataType::Int32,
        (ColumnType::MYSQL_TYPE_INT24 | ColumnType::MYSQL_TYPE_LONG, true) => DbDataType::Uint32,
        (ColumnType::MYSQL_TYPE_LONGLONG, false) => DbDataType::Int64,
        (ColumnType::MYSQL_TYPE_LONGLONG, true) => DbDataType::Uint64,
        (ColumnType::MYSQL_TYPE_FLOAT, _) => DbDataType::Floating32,
        (ColumnType::MYSQL_TYPE_DOUBLE, _) => DbDataType::Floating64,
        (ty, _) if is_string_type(ty) && column.character_set() == BINARY_CHARSET => {
            DbDataType::Binary
        }
        (ColumnType::MYSQL_TYPE_BIT | ColumnType::MYSQL_TYPE_GEOMETRY, _) => DbDataType::Binary,
        (ty, _) if is_string_type(ty) => DbDataType::Str,
        (
            ColumnType::MYSQL_TYPE_DECIMAL
            | ColumnType::MYSQL_TYPE_NEWDECIMAL
            | ColumnType::MYSQL_TYPE_ENUM
            | ColumnType::MYSQL_TYPE_SET
            | ColumnType::MYSQL_TYPE_JSON
            | ColumnType::MYSQL_TYPE_DATE
            | ColumnType::MYSQL_TYPE_NEWDATE
            | ColumnType::MYSQL_TYPE_TIME
            | ColumnType::MYSQL_TYPE_TIME2
            | ColumnType::MYSQL_TYPE_DATETIME
            | ColumnType::MYSQL_TYPE_DATETIME2
            | ColumnType::MYSQL_TYPE_TIMESTAMP
            | ColumnType::MYSQL_TYPE_TIMESTAMP2,
            _,
        ) => DbDataType::Str,
        _ => DbDataType::Other,
    }
}

/// Character and byte strings: text or binary depending on the column's character set.
fn is_string_type(ty: ColumnType) -> bool {
    matches!(
        ty,
        ColumnType::MYSQL_TYPE_STRING
            | ColumnType::MYSQL_TYPE_VAR_STRING
            | ColumnType::MYSQL_TYPE_VARCHAR
            | ColumnType::MYSQL_TYPE_BLOB
            | ColumnType::MYSQL_TYPE_TINY_BLOB
            | ColumnType::MYSQL_TYPE_MEDIUM_BLOB
            | ColumnType::MYSQL_TYPE_LONG_BLOB
    )
}

pub(super) fn column(column: &mysql_async::Column) -> Column {
    Column {
        name: column.name_str().into_owned(),
        data_type: data_type(column),
    }
}

/// Converts one value of a column of type `ty`; `None` if the value does not fit the type.
pub(super) fn db_value(value: Value, ty: DbDataType) -> Option<DbValue> {
    if value == Value::NULL {
        return Some(DbValue::DbNull);
    }
    Some(match ty {
        DbDataType::Boolean => DbValue::Boolean(integer::<i64>(&value)? != 0),
        DbDataType::Int8 => DbValue::Int8(integer(&value)?),
        DbDataType::Int16 => DbValue::Int16(integer(&value)?),
        DbDataType::Int32 => DbValue::Int32(integer(&value)?),
        DbDataType::Int64 => DbValue::Int64(integer(&value)?),
        DbDataType::Uint8 => DbValue::Uint8(integer(&value)?),
        DbDataType::Uint16 => DbValue::Uint16(integer(&value)?),
        DbDataType::Uint32 => DbValue::Uint32(integer(&value)?),
        DbDataType::Uint64 => DbValue::Uint64(integer(&value)?),
        DbDataType::Floating32 => DbValue::Floating32(float(&value)? as f32),
        DbDataType::Floating64 => DbValue::Floating64(float(&value)?),
        DbDataType::Binary => DbValue::Binary(bytes(value)?),
        // A text column can still carry bytes that are not UTF-8 (a `?` placeholder bound
        // to binary data is typed with the connection's character set): hand those over as
        // binary rather than failing the row.
        DbDataType::Str => match value {
            Value::Bytes(bytes) => match String::from_utf8(bytes) {
                Ok(text) => DbValue::Str(text),
                Err(not_utf8) => DbValue::Binary(not_utf8.into_bytes()),
            },
            other => DbValue::Str(text(other)?),
        },
        DbDataType::Other => DbValue::Unsupported,
    })
}

fn integer<T: TryFrom<i64> + TryFrom<u64> + std::str::FromStr>(value: &Value) -> Option<T> {
    match value {
        Value::Int(n) => T::try_from(*n).ok(),
        Value::UInt(n) => T::try_from(*n).ok(),
        Value::Bytes(text) => std::str::from_utf8(text).ok()?.parse().ok(),
        _ => None,
    }
}

fn float(value: &Value) -> Option<f64> {
    match value {
        Value::Float(n) => Some(f64::from(*n)),
        Value::Double(n) => Some(*n),
        Value::Int(n) => Some(*n as f64),
        Value::UInt(n) => Some(*n as f64),
        Value::Bytes(text) => std::str::from_utf8(text).ok()?.parse().ok(),
        _ => None,
    }
}

fn bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::Bytes(bytes) => Some(bytes),
        other => text(other).map(String::into_bytes),
    }
}

/// Text, with dates and times in MySQL's own literal format (`2026-11-21 12:00:00.000000`),
/// the same text the text protocol carries.
fn text(value: Value) -> Option<String> {
    match value {
        Value::Bytes(bytes) => String::from_utf8(bytes).ok(),
        Value::Int(n) => Some(n.to_string()),
        Value::UInt(n) => Some(n.to_string()),
        Value::Float(n) => Some(n.to_string()),
        Value::Double(n) => Some(n.to_string()),
        Value::Date(year, month, day, hour, minute, second, micros) => Some(format!(
            "{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}.{micros:06}"
        )),
        Value::Time(negative, days, hours, minutes, seconds, micros) => {
            let sign = if negative { "-" } else { "" };
            let hours = days * 24 + u32::from(hours);
            Some(format!(
                "{sign}{hours:02}:{minutes:02}:{seconds:02}.{micros:06}"
            ))
        }
        Value::NULL => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_protocol_numbers_convert_to_the_columns_type() {
        assert_eq!(
            db_value(Value::Bytes(b"-42".to_vec()), DbDataType::Int32),
            Some(DbValue::Int32(-42))
        );
        assert_eq!(
            db_value(Value::Bytes(b"300".to_vec()), DbDataType::Uint16),
            Some(DbValue::Uint16(300))
        );
        assert_eq!(
            db_value(Value::Bytes(b"1.5".to_vec()), DbDataType::Floating64),
            Some(DbValue::Floating64(1.5))
        );
    }

    #[test]
    fn binary_protocol_numbers_convert_to_the_columns_type() {
        assert_eq!(
            db_value(Value::Int(-7), DbDataType::Int8),
            Some(DbValue::Int8(-7))
        );
        assert_eq!(
            db_value(Value::UInt(u64::MAX), DbDataType::Uint64),
            Some(DbValue::Uint64(u64::MAX))
        );
        assert_eq!(
            db_value(Value::Int(1), DbDataType::Boolean),
            Some(DbValue::Boolean(true))
        );
    }

    #[test]
    fn a_value_out_of_the_columns_range_is_refused_not_truncated() {
        assert_eq!(db_value(Value::Int(300), DbDataType::Int8), None);
        assert_eq!(
            db_value(Value::Bytes(b"abc".to_vec()), DbDataType::Int64),
            None
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_in_a_text_column_arrive_as_binary() {
        assert_eq!(
            db_value(Value::Bytes(vec![0, 255]), DbDataType::Str),
            Some(DbValue::Binary(vec![0, 255]))
        );
    }

    #[test]
    fn null_is_null_in_any_column() {
        assert_eq!(
            db_value(Value::NULL, DbDataType::Int64),
            Some(DbValue::DbNull)
        );
        assert_eq!(
            db_value(Value::NULL, DbDataType::Str),
            Some(DbValue::DbNull)
        );
    }

    #[test]
    fn datetimes_read_as_mysql_literals() {
        let value = Value::Date(2026, 11, 21, 12, 34, 56, 789_000);
        assert_eq!(
            db_value(value, DbDataType::Str),
            Some(DbValue::Str("2026-11-21 12:34:56.789000".to_owned()))
        );
    }

    #[test]
    fn parameters_keep_their_values() {
        assert_eq!(parameter(ParameterValue::Boolean(true)), Value::Int(1));
        assert_eq!(
            parameter(ParameterValue::Uint64(u64::MAX)),
            Value::UInt(u64::MAX)
        );
        assert_eq!(
            parameter(ParameterValue::Str("é".into())),
            Value::Bytes("é".as_bytes().to_vec())
        );
        assert_eq!(parameter(ParameterValue::DbNull), Value::NULL);
    }
}
