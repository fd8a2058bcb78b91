//! The probe component: one route per host capability the integration tests check.

use anyhow::{Context as _, anyhow};
use serde_json::{Value, json};
use spin_sdk::http::body::IncomingBodyExt;
use spin_sdk::http::{HeaderMap, HeaderValue, IntoResponse, Request, StatusCode};
use spin_sdk::{http_service, mysql, redis, variables};

fn query_param<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request.uri().query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then_some(value)
    })
}

fn json_response(status: StatusCode, body: Value) -> impl IntoResponse {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    (status, headers, body.to_string())
}

async fn redis_connection() -> anyhow::Result<redis::Connection> {
    let address = variables::get("redis_url")
        .await
        .map_err(|e| anyhow!("{e:?}"))?;
    redis::Connection::open(address)
        .await
        .map_err(|e| anyhow!("{e:?}"))
}

async fn mysql_connection() -> anyhow::Result<mysql::Connection> {
    let address = variables::get("mysql_url")
        .await
        .map_err(|e| anyhow!("{e:?}"))?;
    mysql::Connection::open(address)
        .await
        .map_err(|e| anyhow!("{e:?}"))
}

/// Every function of spin:redis, on keys under `prefix`.
async fn redis_all(prefix: &str) -> anyhow::Result<Value> {
    let c = redis_connection().await?;
    let e = |e: redis::Error| anyhow!("{e:?}");
    let key = format!("{prefix}:k");
    let set = format!("{prefix}:s");
    let counter = format!("{prefix}:n");
    c.set(&key, b"value").await.map_err(e)?;
    let got = c.get(&key).await.map_err(e)?;
    let missing = c.get(format!("{prefix}:missing")).await.map_err(e)?;
    let incr = c.incr(&counter).await.map_err(e)?;
    let added = c.sadd(&set, ["a", "b", "c"]).await.map_err(e)?;
    let removed = c.srem(&set, ["b"]).await.map_err(e)?;
    let mut members = c.smembers(&set).await.map_err(e)?;
    members.sort();
    c.publish(format!("{prefix}:channel"), b"hello")
        .await
        .map_err(e)?;
    let script = "return {KEYS[1], ARGV[1], tonumber(ARGV[2]) + 1}";
    let loaded = c
        .execute(
            "SCRIPT",
            [
                redis::RedisParameter::Binary(b"LOAD".to_vec()),
                redis::RedisParameter::Binary(script.as_bytes().to_vec()),
            ],
        )
        .await
        .map_err(e)?;
    let sha = match loaded.first() {
        Some(redis::RedisResult::Binary(sha)) => sha.clone(),
        other => return Err(anyhow!("SCRIPT LOAD gave {other:?}")),
    };
    let evalsha = c
        .execute(
            "EVALSHA",
            [
                redis::RedisParameter::Binary(sha),
                redis::RedisParameter::Int64(1),
                redis::RedisParameter::Binary(b"key1".to_vec()),
                redis::RedisParameter::Binary(b"arg".to_vec()),
                redis::RedisParameter::Int64(41),
            ],
        )
        .await
        .map_err(e)?;
    let wrong_type = c.incr(&set).await;
    let deleted = c
        .del([key.clone(), set.clone(), counter.clone()])
        .await
        .map_err(e)?;
    Ok(json!({
        "get": got.map(|v| String::from_utf8_lossy(&v).into_owned()),
        "missing": missing.is_none(),
        "incr": incr,
        "sadd": added,
        "srem": removed,
        "smembers": members,
        "evalsha": evalsha.iter().map(|r| match r {
            redis::RedisResult::Binary(b) => json!(String::from_utf8_lossy(b)),
            redis::RedisResult::Int64(n) => json!(n),
            redis::RedisResult::Status(s) => json!(s),
            redis::RedisResult::Nil => Value::Null,
        }).collect::<Vec<_>>(),
        "wrong_type": format!("{:?}", wrong_type.err()),
        "del": deleted,
    }))
}

/// Runs `statements` on one connection; `SELECT`s return their rows.
async fn mysql_script(statements: &[&str]) -> anyhow::Result<Value> {
    let c = mysql_connection().await?;
    let mut results = Vec::new();
    for statement in statements {
        if statement.starts_with("SELECT") {
            let rows = c
                .query(*statement, vec![])
                .await
                .map_err(|e| anyhow!("{e:?}"))?;
            let rows = rows.collect().await.map_err(|e| anyhow!("{e:?}"))?;
            results.push(json!(
                rows.iter()
                    .map(|r| format!("{:?}", r[0]))
                    .collect::<Vec<_>>()
            ));
        } else {
            c.execute(*statement, vec![])
                .await
                .map_err(|e| anyhow!("{statement}: {e:?}"))?;
        }
    }
    Ok(json!(results))
}

/// Columns of every MySQL type with one value each, and expressions over them: what a
/// guest reads of each (its WIT type, and its value or the error that failed the query).
/// The same route under `spin up` must answer the same (the conformance run compares them).
const COLUMN_TYPES: &[(&str, &str, &str)] = &[
    ("c_tinyint", "TINYINT", "-8"),
    ("c_boolean", "BOOLEAN", "TRUE"),
    ("c_utinyint", "TINYINT UNSIGNED", "200"),
    ("c_smallint", "SMALLINT", "-16"),
    ("c_mediumint", "MEDIUMINT", "-24"),
    ("c_int", "INT UNSIGNED", "32"),
    ("c_bigint", "BIGINT", "-64"),
    ("c_float", "FLOAT", "1.5"),
    ("c_double", "DOUBLE", "2.25"),
    ("c_decimal", "DECIMAL(10,2)", "12.50"),
    ("c_year", "YEAR", "2026"),
    ("c_char", "CHAR(3)", "'abc'"),
    ("c_varchar", "VARCHAR(10)", "'é'"),
    ("c_varchar_bin", "VARCHAR(10) COLLATE utf8mb4_bin", "'bin'"),
    ("c_binary", "BINARY(2)", "0x00FF"),
    ("c_varbinary", "VARBINARY(4)", "0x00FF"),
    ("c_text", "TEXT", "'text'"),
    ("c_mediumtext", "MEDIUMTEXT", "'medium'"),
    ("c_blob", "BLOB", "0x00FF"),
    ("c_enum", "ENUM('A','B')", "'B'"),
    ("c_set", "SET('x','y')", "'x,y'"),
    ("c_bit", "BIT(8)", "b'101'"),
    ("c_date", "DATE", "'2026-11-21'"),
    ("c_time", "TIME", "'12:34:56'"),
    ("c_datetime", "DATETIME(3)", "'2026-11-21 12:34:56.789'"),
    ("c_timestamp", "TIMESTAMP(3)", "'2026-11-21 12:34:56.789'"),
];

/// Expressions a component may use to read what a column of [`COLUMN_TYPES`] cannot carry.
const COLUMN_EXPRESSIONS: &[&str] = &[
    "CAST(c_datetime AS CHAR)",
    "DATE_FORMAT(c_datetime, '%Y-%m-%d %H:%i:%s.%f')",
    "CAST(c_decimal AS CHAR)",
    "SUM(c_int)",
    "CAST(SUM(c_int) AS UNSIGNED)",
    "COUNT(*)",
    "GROUP_CONCAT(c_int)",
    "NULL",
    "c_enum = 'B'",
];

async fn mysql_columns() -> anyhow::Result<Value> {
    let c = mysql_connection().await?;
    let run = |statement: String| {
        let c = &c;
        async move {
            c.execute(&statement, vec![])
                .await
                .map_err(|e| anyhow!("{statement}: {e:?}"))
        }
    };
    run("DROP TABLE IF EXISTS edge_probe_columns".to_owned()).await?;
    let definitions: Vec<String> = COLUMN_TYPES
        .iter()
        .map(|(name, ty, _)| format!("{name} {ty} NULL"))
        .collect();
    run(format!(
        "CREATE TABLE edge_probe_columns ({}) CHARACTER SET utf8mb4",
        definitions.join(", ")
    ))
    .await?;
    let names: Vec<&str> = COLUMN_TYPES.iter().map(|(name, _, _)| *name).collect();
    let values: Vec<&str> = COLUMN_TYPES.iter().map(|(_, _, value)| *value).collect();
    run(format!(
        "INSERT INTO edge_probe_columns ({}) VALUES ({})",
        names.join(", "),
        values.join(", ")
    ))
    .await?;
    let mut read = serde_json::Map::new();
    for expression in names
        .iter()
        .copied()
        .chain(COLUMN_EXPRESSIONS.iter().copied())
    {
        let statement = format!("SELECT {expression} FROM edge_probe_columns");
        let result = c
            .query(&statement, vec![])
            .await
            .map_err(|e| anyhow!("{statement}: {e:?}"))?;
        let ty = format!("{:?}", result.columns()[0].data_type);
        let seen = match result.collect().await {
            Ok(rows) => format!("{:?}", rows[0][0]),
            // The variant only: the message is the driver's own wording.
            Err(error) => format!("{error:?}")
                .split('(')
                .take(2)
                .collect::<Vec<_>>()
                .join("("),
        };
        read.insert(expression.to_owned(), json!([ty, seen]));
    }
    Ok(Value::Object(read))
}

/// Round-trips a value of every parameter type through a prepared statement.
async fn mysql_types() -> anyhow::Result<Value> {
    use mysql::ParameterValue as P;
    let c = mysql_connection().await?;
    let params: Vec<mysql::ParameterValue> = vec![
        P::Boolean(true),
        P::Int8(-8),
        P::Int16(-16),
        P::Int32(-32),
        P::Int64(-64),
        P::Uint8(8),
        P::Uint16(16),
        P::Uint32(32),
        P::Uint64(u64::MAX),
        P::Floating32(1.5),
        P::Floating64(2.25),
        P::Str("text é".to_owned()),
        P::Binary(vec![0, 255]),
        P::DbNull,
    ];
    // A `?` alone is typed as text of the connection's character set, so bytes come back
    // through CAST(… AS BINARY), as under Spin.
    let sql = "SELECT ?, CAST(? AS SIGNED), CAST(? AS SIGNED), CAST(? AS SIGNED), CAST(? AS SIGNED), \
               CAST(? AS UNSIGNED), CAST(? AS UNSIGNED), CAST(? AS UNSIGNED), CAST(? AS UNSIGNED), \
               ?, ?, ?, CAST(? AS BINARY), ?";
    let result = c.query(sql, params).await.map_err(|e| anyhow!("{e:?}"))?;
    let columns: Vec<String> = result
        .columns()
        .iter()
        .map(|c| format!("{:?}", c.data_type))
        .collect();
    let rows = result.collect().await.map_err(|e| anyhow!("{e:?}"))?;
    let row = rows.first().context("no row")?;
    let values: Vec<String> = (0..14).map(|i| format!("{:?}", row[i])).collect();
    Ok(json!({ "columns": columns, "values": values }))
}

/// Streams `n` generated rows and counts them.
async fn mysql_stream(n: u32) -> anyhow::Result<Value> {
    let c = mysql_connection().await?;
    let sql = "SELECT seq FROM (SELECT a.n + b.n * 100 + c.n * 10000 AS seq FROM \
               (SELECT 0 n UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4) a \
               CROSS JOIN (SELECT 0 n UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4) b \
               CROSS JOIN (SELECT 0 n UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4) c) t \
               ORDER BY seq LIMIT ?";
    let mut result = c
        .query(sql, vec![mysql::ParameterValue::Uint32(n)])
        .await
        .map_err(|e| anyhow!("{e:?}"))?;
    let mut count = 0;
    while let Some(_row) = result.next().await {
        count += 1;
    }
    result.result().await.map_err(|e| anyhow!("{e:?}"))?;
    Ok(json!({ "rows": count }))
}

#[http_service]
async fn handle(request: Request) -> anyhow::Result<impl IntoResponse> {
    let path = request.uri().path().to_owned();
    let tail = path
        .trim_start_matches("/probe")
        .trim_start_matches("/locked");
    let ok = |body: Value| Ok(json_response(StatusCode::OK, body));
    match tail {
        "/hello" => ok(json!("hello")),
        "/headers" => {
            // Every value of every `spin-*` header, in the order the host gave them.
            let mut headers = serde_json::Map::new();
            for (name, value) in request.headers() {
                if name.as_str().starts_with("spin-") {
                    let values = headers.entry(name.to_string()).or_insert_with(|| json!([]));
                    if let Value::Array(values) = values {
                        values.push(json!(value.to_str().unwrap_or("?")));
                    }
                }
            }
            ok(json!({ "uri": request.uri().to_string(), "headers": headers }))
        }
        "/echo" => {
            let body = request
                .into_body()
                .bytes()
                .await
                .map_err(|e| anyhow!("{e:?}"))?;
            ok(json!({ "length": body.len() }))
        }
        "/sleep" => {
            let ms = query_param(&request, "ms")
                .and_then(|ms| ms.parse().ok())
                .unwrap_or(0);
            spin_sdk::time::sleep(std::time::Duration::from_millis(ms)).await;
            ok(json!({ "slept_ms": ms }))
        }
        "/var" => {
            let name = query_param(&request, "name").unwrap_or_default();
            match variables::get(name).await {
                Ok(value) => ok(json!({ "value": value })),
                Err(error) => ok(json!({ "error": format!("{error:?}") })),
            }
        }
        "/incr" => {
            let c = redis_connection().await?;
            let n = c
                .incr("edge-probe:incr")
                .await
                .map_err(|e| anyhow!("{e:?}"))?;
            ok(json!(n))
        }
        "/redis" => {
            let prefix = query_param(&request, "prefix").unwrap_or("edge-probe");
            match redis_all(prefix).await {
                Ok(value) => ok(value),
                Err(error) => ok(json!({ "error": error.to_string() })),
            }
        }
        "/redis-open" => {
            let address = query_param(&request, "address")
                .unwrap_or_default()
                .replace("%3A", ":")
                .replace("%2F", "/");
            let result = redis::Connection::open(address).await.map(drop);
            ok(json!({ "result": format!("{result:?}") }))
        }
        "/mysql-open" => {
            let result = mysql_connection().await.map(drop);
            ok(json!({ "result": format!("{result:?}") }))
        }
        "/mysql/commit" => ok(mysql_script(&[
            "START TRANSACTION",
            "INSERT INTO edge_probe (label) VALUES ('committed')",
            "COMMIT",
            "SELECT COUNT(*) FROM edge_probe WHERE label = 'committed'",
        ])
        .await?),
        "/mysql/rollback" => ok(mysql_script(&[
            "START TRANSACTION",
            "INSERT INTO edge_probe (label) VALUES ('rolled-back')",
            "ROLLBACK",
            "SELECT COUNT(*) FROM edge_probe WHERE label = 'rolled-back'",
        ])
        .await?),
        "/mysql/abandon" => ok(mysql_script(&[
            "START TRANSACTION",
            "INSERT INTO edge_probe (label) VALUES ('abandoned')",
        ])
        .await?),
        // Session state a guest leaves behind, and what the next guest sees of it.
        "/mysql/session/set" => ok(mysql_script(&[
            "SET SESSION innodb_lock_wait_timeout = 7",
            "SELECT CONNECTION_ID()",
        ])
        .await?),
        // The same setting again, then what is in effect and how many SETs the server ran
        // on this session so far (read without `@@`, which would make the host reset it).
        "/mysql/session/set-again" => ok(mysql_script(&[
            "SET SESSION innodb_lock_wait_timeout = 7",
            "SELECT CONNECTION_ID()",
            "SELECT VARIABLE_VALUE FROM information_schema.SESSION_VARIABLES \
             WHERE VARIABLE_NAME = 'INNODB_LOCK_WAIT_TIMEOUT'",
            "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS \
             WHERE VARIABLE_NAME = 'COM_SET_OPTION'",
        ])
        .await?),
        "/mysql/session/uservar" => {
            ok(mysql_script(&["SET @leak = 1", "SELECT CONNECTION_ID()"]).await?)
        }
        "/mysql/session/show" => ok(mysql_script(&[
            "SELECT CONNECTION_ID()",
            "SELECT @@SESSION.innodb_lock_wait_timeout",
            "SELECT @@GLOBAL.innodb_lock_wait_timeout",
            "SELECT @leak IS NULL",
        ])
        .await?),
        "/mysql/count" => {
            let label = query_param(&request, "label").unwrap_or_default();
            let c = mysql_connection().await?;
            let rows = c
                .query(
                    "SELECT COUNT(*) AS n FROM edge_probe WHERE label = ?",
                    vec![mysql::ParameterValue::Str(label.to_owned())],
                )
                .await
                .map_err(|e| anyhow!("{e:?}"))?
                .collect()
                .await
                .map_err(|e| anyhow!("{e:?}"))?;
            ok(json!(rows.first().and_then(|r| r.get::<i64>("n"))))
        }
        "/mysql/types" => ok(mysql_types().await?),
        "/mysql/columns" => ok(mysql_columns().await?),
        "/mysql/stream" => {
            let n = query_param(&request, "n")
                .and_then(|n| n.parse().ok())
                .unwrap_or(1000);
            ok(mysql_stream(n).await?)
        }
        "/mysql/error" => {
            let c = mysql_connection().await?;
            let result = c.execute("SELECT * FROM no_such_table", vec![]).await;
            ok(json!({ "error": format!("{:?}", result.err()) }))
        }
        "/outbound" => {
            let url = query_param(&request, "url")
                .unwrap_or_default()
                .replace("%3A", ":")
                .replace("%2F", "/");
            let result = match spin_sdk::http::get(url).await {
                Ok(response) => {
                    let status = response.status();
                    match response.into_body().bytes().await {
                        Ok(body) => format!("status {status}: {}", String::from_utf8_lossy(&body)),
                        Err(error) => format!("status {status}, body {error:?}"),
                    }
                }
                Err(error) => format!("{error:?}"),
            };
            ok(json!({ "result": result }))
        }
        "/trap" => panic!("the probe was asked to trap"),
        "/spin" => {
            // Burns CPU without yielding until the host interrupts it.
            let mut x: u64 = 0;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        _ => Ok(json_response(
            StatusCode::NOT_FOUND,
            json!({ "error": "not_found", "message": path }),
        )),
    }
}
