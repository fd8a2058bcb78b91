//! Conversions between the WIT `parameter-value`/`db-value` types and MySQL values, exactly
//! as Spin 4.1's outbound MySQL makes them (`spin-factor-outbound-mysql`), so a component
//! that reads a column here reads it under `spin up` too.
//!
//! Spin runs every statement as a prepared statement (MySQL's binary protocol) and types a
//! column by its wire type alone: integers and floats by width and sign, text and byte
//! strings by the column's `BINARY` flag, and everything else (DATE, TIME, DATETIME,
//! TIMESTAMP, YEAR, DECIMAL, ENUM/SET sent as such, JSON, BIT, TINY/MEDIUM/LONG BLOB) as
//! `other`, whose values it cannot convert: one such non-NULL value fails the whole query.
//! Values convert as `mysql_common`'s `FromValue` does: an integer only from an integer in
//! range or from decimal text, a float only from a float of at most its width or from text,
//! text only from UTF-8 bytes. A component must therefore read a date as text or a number
//! (`DATE_FORMAT`, `CAST(… AS CHAR)`, `UNIX_TIMESTAMP`), never as the column itself.

use mysql_async::Value;
use mysql_async::consts::{ColumnFlags, ColumnType};

use crate::bindings::mysql::{Column, DbDataType, DbValue, ParameterValue};

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

/// The WIT type of a column, from its wire type, `UNSIGNED` flag and `BINARY` flag.
pub(super) fn data_type(column: &mysql_async::Column) -> DbDataType {
    data_type_of(column.column_type(), column.flags())
}

fn data_type_of(ty: ColumnType, flags: ColumnFlags) -> DbDataType {
    use ColumnType::*;
    let unsigned = flags.contains(ColumnFlags::UNSIGNED_FLAG);
    let binary = flags.contains(ColumnFlags::BINARY_FLAG);
    match (ty, unsigned) {
        (MYSQL_TYPE_TINY, false) => DbDataType::Int8,
        (MYSQL_TYPE_TINY, true) => DbDataType::Uint8,
        (MYSQL_TYPE_SHORT, false) => DbDataType::Int16,
        (MYSQL_TYPE_SHORT, true) => DbDataType::Uint16,
        (MYSQL_TYPE_INT24 | MYSQL_TYPE_LONG, false) => DbDataType::Int32,
        (MYSQL_TYPE_INT24 | MYSQL_TYPE_LONG, true) => DbDataType::Uint32,
        (MYSQL_TYPE_LONGLONG, false) => DbDataType::Int64,
        (MYSQL_TYPE_LONGLONG, true) => DbDataType::Uint64,
        (MYSQL_TYPE_FLOAT, _) => DbDataType::Floating32,
        (MYSQL_TYPE_DOUBLE, _) => DbDataType::Floating64,
        // TEXT and BLOB of every size arrive as MYSQL_TYPE_BLOB; CHAR/BINARY as STRING,
        // VARCHAR/VARBINARY as VAR_STRING. A `_bin` collation sets BINARY too.
        (MYSQL_TYPE_BLOB | MYSQL_TYPE_STRING | MYSQL_TYPE_VAR_STRING, _) if binary => {
            DbDataType::Binary
        }
        (MYSQL_TYPE_BLOB | MYSQL_TYPE_STRING | MYSQL_TYPE_VAR_STRING, _) => DbDataType::Str,
        _ => DbDataType::Other,
    }
}

pub(super) fn column(column: &mysql_async::Column) -> Column {
    Column {
        name: column.name_str().into_owned(),
        data_type: data_type(column),
    }
}

/// Converts one value of a column of type `ty`; the value back if Spin could not convert
/// it, so a failure (rare) is described without every success paying for a description.
pub(super) fn db_value(value: Value, ty: DbDataType) -> Result<DbValue, Value> {
    if value == Value::NULL {
        return Ok(DbValue::DbNull);
    }
    let converted = match ty {
        DbDataType::Int8 => integer(&value).map(DbValue::Int8),
        DbDataType::Int16 => integer(&value).map(DbValue::Int16),
        DbDataType::Int32 => integer(&value).map(DbValue::Int32),
        DbDataType::Int64 => integer(&value).map(DbValue::Int64),
        DbDataType::Uint8 => integer(&value).map(DbValue::Uint8),
        DbDataType::Uint16 => integer(&value).map(DbValue::Uint16),
        DbDataType::Uint32 => integer(&value).map(DbValue::Uint32),
        DbDataType::Uint64 => integer(&value).map(DbValue::Uint64),
        DbDataType::Floating32 => match &value {
            Value::Float(n) => Some(*n),
            Value::Bytes(text) => parsed(text),
            _ => None,
        }
        .map(DbValue::Floating32),
        DbDataType::Floating64 => match &value {
            Value::Double(n) => Some(*n),
            Value::Float(n) => Some(f64::from(*n)),
            Value::Bytes(text) => parsed(text),
            _ => None,
        }
        .map(DbValue::Floating64),
        DbDataType::Str => {
            return match value {
                Value::Bytes(bytes) => String::from_utf8(bytes)
                    .map(DbValue::Str)
                    .map_err(|error| Value::Bytes(error.into_bytes())),
                other => Err(other),
            };
        }
        DbDataType::Binary => {
            return match value {
                Value::Bytes(bytes) => Ok(DbValue::Binary(bytes)),
                other => Err(other),
            };
        }
        // Spin types no column as boolean, and cannot convert a value of type `other`.
        DbDataType::Boolean | DbDataType::Other => None,
    };
    converted.ok_or(value)
}

fn integer<T: TryFrom<i64> + TryFrom<u64> + std::str::FromStr>(value: &Value) -> Option<T> {
    match value {
        Value::Int(n) => T::try_from(*n).ok(),
        Value::UInt(n) => T::try_from(*n).ok(),
        Value::Bytes(text) => parsed(text),
        _ => None,
    }
}

/// A number sent as text, read as `mysql_common`'s `FromValue` reads it.
fn parsed<T: std::str::FromStr>(text: &[u8]) -> Option<T> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ColumnType::*;

    const NONE: ColumnFlags = ColumnFlags::empty();
    const UNSIGNED: ColumnFlags = ColumnFlags::UNSIGNED_FLAG;
    const BINARY: ColumnFlags = ColumnFlags::BINARY_FLAG;

    #[test]
    fn every_wire_type_maps_to_the_wit_type_spin_gives_it() {
        let table = [
            (MYSQL_TYPE_TINY, NONE, DbDataType::Int8),
            (MYSQL_TYPE_TINY, UNSIGNED, DbDataType::Uint8),
            (MYSQL_TYPE_SHORT, NONE, DbDataType::Int16),
            (MYSQL_TYPE_SHORT, UNSIGNED, DbDataType::Uint16),
            (MYSQL_TYPE_INT24, NONE, DbDataType::Int32),
            (MYSQL_TYPE_INT24, UNSIGNED, DbDataType::Uint32),
            (MYSQL_TYPE_LONG, NONE, DbDataType::Int32),
            (MYSQL_TYPE_LONG, UNSIGNED, DbDataType::Uint32),
            (MYSQL_TYPE_LONGLONG, NONE, DbDataType::Int64),
            (MYSQL_TYPE_LONGLONG, UNSIGNED, DbDataType::Uint64),
            (MYSQL_TYPE_FLOAT, NONE, DbDataType::Floating32),
            (MYSQL_TYPE_DOUBLE, UNSIGNED, DbDataType::Floating64),
            (MYSQL_TYPE_STRING, NONE, DbDataType::Str),
            (MYSQL_TYPE_STRING, BINARY, DbDataType::Binary),
            (MYSQL_TYPE_VAR_STRING, NONE, DbDataType::Str),
            (MYSQL_TYPE_VAR_STRING, BINARY, DbDataType::Binary),
            (MYSQL_TYPE_BLOB, NONE, DbDataType::Str),
            (MYSQL_TYPE_BLOB, BINARY, DbDataType::Binary),
            (MYSQL_TYPE_VARCHAR, NONE, DbDataType::Other),
            (MYSQL_TYPE_TINY_BLOB, NONE, DbDataType::Other),
            (MYSQL_TYPE_MEDIUM_BLOB, BINARY, DbDataType::Other),
            (MYSQL_TYPE_LONG_BLOB, NONE, DbDataType::Other),
            (MYSQL_TYPE_YEAR, UNSIGNED, DbDataType::Other),
            (MYSQL_TYPE_DECIMAL, NONE, DbDataType::Other),
            (MYSQL_TYPE_NEWDECIMAL, NONE, DbDataType::Other),
            (MYSQL_TYPE_DATE, NONE, DbDataType::Other),
            (MYSQL_TYPE_NEWDATE, NONE, DbDataType::Other),
            (MYSQL_TYPE_TIME, NONE, DbDataType::Other),
            (MYSQL_TYPE_TIME2, NONE, DbDataType::Other),
            (MYSQL_TYPE_DATETIME, NONE, DbDataType::Other),
            (MYSQL_TYPE_DATETIME2, NONE, DbDataType::Other),
            (MYSQL_TYPE_TIMESTAMP, NONE, DbDataType::Other),
            (MYSQL_TYPE_TIMESTAMP2, NONE, DbDataType::Other),
            (MYSQL_TYPE_ENUM, NONE, DbDataType::Other),
            (MYSQL_TYPE_SET, NONE, DbDataType::Other),
            (MYSQL_TYPE_JSON, NONE, DbDataType::Other),
            (MYSQL_TYPE_BIT, UNSIGNED, DbDataType::Other),
            (MYSQL_TYPE_GEOMETRY, BINARY, DbDataType::Other),
            (MYSQL_TYPE_NULL, NONE, DbDataType::Other),
        ];
        for (ty, flags, expected) in table {
            assert_eq!(data_type_of(ty, flags), expected, "{ty:?} {flags:?}");
        }
    }

    #[test]
    fn values_convert_as_spin_converts_them_or_not_at_all() {
        let bytes = |b: &[u8]| Value::Bytes(b.to_vec());
        let table = [
            (Value::Int(-7), DbDataType::Int8, Some(DbValue::Int8(-7))),
            (Value::Int(300), DbDataType::Int8, None),
            (
                Value::UInt(u64::MAX),
                DbDataType::Uint64,
                Some(DbValue::Uint64(u64::MAX)),
            ),
            (Value::Int(-1), DbDataType::Uint32, None),
            (bytes(b"-42"), DbDataType::Int32, Some(DbValue::Int32(-42))),
            (bytes(b"4.2"), DbDataType::Int32, None),
            (Value::Double(1.0), DbDataType::Int64, None),
            (
                Value::Float(1.5),
                DbDataType::Floating32,
                Some(DbValue::Floating32(1.5)),
            ),
            (Value::Double(1.5), DbDataType::Floating32, None),
            (
                bytes(b"2.5"),
                DbDataType::Floating32,
                Some(DbValue::Floating32(2.5)),
            ),
            (
                Value::Float(1.5),
                DbDataType::Floating64,
                Some(DbValue::Floating64(1.5)),
            ),
            (
                Value::Double(2.25),
                DbDataType::Floating64,
                Some(DbValue::Floating64(2.25)),
            ),
            (Value::Int(2), DbDataType::Floating64, None),
            (
                bytes("é".as_bytes()),
                DbDataType::Str,
                Some(DbValue::Str("é".to_owned())),
            ),
            (bytes(&[0, 255]), DbDataType::Str, None),
            (Value::Int(1), DbDataType::Str, None),
            (
                bytes(&[0, 255]),
                DbDataType::Binary,
                Some(DbValue::Binary(vec![0, 255])),
            ),
            (Value::Int(1), DbDataType::Binary, None),
            (
                Value::Date(2026, 11, 21, 12, 0, 0, 0),
                DbDataType::Other,
                None,
            ),
            (bytes(b"12.50"), DbDataType::Other, None),
            (Value::Int(1), DbDataType::Boolean, None),
            (Value::NULL, DbDataType::Other, Some(DbValue::DbNull)),
            (Value::NULL, DbDataType::Int64, Some(DbValue::DbNull)),
        ];
        for (value, ty, expected) in table {
            let shown = format!("{value:?} as {ty:?}");
            let converted = db_value(value.clone(), ty);
            match expected {
                Some(expected) => assert_eq!(converted, Ok(expected), "{shown}"),
                // A value Spin cannot convert comes back unchanged, to be described.
                None => assert_eq!(converted, Err(value), "{shown}"),
            }
        }
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
