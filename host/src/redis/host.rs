//! The host functions of `spin:redis/redis@3.0.0`.
//!
//! Every failure the guest can expect (refused address, Redis down, wrong type) is a WIT
//! error value, the variant Spin 4.1 gives it; only a broken resource table (a host bug)
//! traps.

use std::time::Instant;

use redis::aio::ConnectionManager;
use redis::{Cmd, ErrorKind, RedisError, Value};
use wasmtime::component::{Accessor, HasSelf, Resource};

use super::RedisConnection;
use crate::bindings::redis::{self as wit, Error, RedisParameter, RedisResult};
use crate::metrics::Backend;
use crate::state::{HostState, calling_component, close_connection, open_connection};

type Outcome<T> = wasmtime::Result<Result<T, Error>>;

/// A failed command as Spin reports it: `other` with the client's text (`sadd` alone
/// reports a reply of the wrong shape as `type-error`).
fn to_wit_error(error: RedisError) -> Error {
    Error::Other(error.to_string())
}

/// The pooled connection behind a guest's resource.
fn connection(
    accessor: &Accessor<HostState, HasSelf<HostState>>,
    resource: &Resource<RedisConnection>,
) -> wasmtime::Result<ConnectionManager> {
    accessor.with(|mut access| Ok(access.get().table.get(resource)?.connection.clone()))
}

/// Runs one command on the resource's connection, recording it as `operation`; a failure
/// is the error value Spin gives it.
async fn run<T: redis::FromRedisValue>(
    accessor: &Accessor<HostState, HasSelf<HostState>>,
    resource: &Resource<RedisConnection>,
    operation: &'static str,
    command: Cmd,
) -> Outcome<T> {
    run_mapping_errors(accessor, resource, operation, command, to_wit_error).await
}

/// [`run`], with the command's own mapping of failures to error values.
async fn run_mapping_errors<T: redis::FromRedisValue>(
    accessor: &Accessor<HostState, HasSelf<HostState>>,
    resource: &Resource<RedisConnection>,
    operation: &'static str,
    command: Cmd,
    to_error: fn(RedisError) -> Error,
) -> Outcome<T> {
    let mut connection = connection(accessor, resource)?;
    let metrics = calling_component(accessor).metrics.clone();
    let started = Instant::now();
    let result = command.query_async::<T>(&mut connection).await;
    metrics.backend_call(Backend::Redis, operation, result.is_ok(), started.elapsed());
    Ok(result.map_err(to_error))
}

/// Flattens a reply into the interface's flat list of results as Spin does: arrays and sets
/// become their elements in order, doubles and big numbers their text; a map, attribute,
/// verbatim string, push or nested error fails the whole command.
fn flatten(value: Value, out: &mut Vec<RedisResult>) -> Result<(), Error> {
    let unsupported = |what: &str| Err(Error::Other(format!("Redis {what} is not supported")));
    match value {
        Value::Nil => out.push(RedisResult::Nil),
        Value::Int(n) => out.push(RedisResult::Int64(n)),
        Value::BulkString(bytes) => out.push(RedisResult::Binary(bytes)),
        Value::SimpleString(text) => out.push(RedisResult::Status(text)),
        Value::Okay => out.push(RedisResult::Status("OK".to_owned())),
        Value::Boolean(b) => out.push(RedisResult::Int64(i64::from(b))),
        Value::Double(d) => out.push(RedisResult::Binary(d.to_string().into_bytes())),
        Value::BigNumber(digits) => out.push(RedisResult::Binary(digits)),
        Value::Array(values) | Value::Set(values) => {
            return values.into_iter().try_for_each(|v| flatten(v, out));
        }
        Value::Map(_) => return unsupported("Map type"),
        Value::Attribute { .. } => return unsupported("Attribute type"),
        Value::VerbatimString { .. } => return unsupported("string with format attribute"),
        Value::Push { .. } => return unsupported("Pub/Sub type"),
        Value::ServerError(error) => return Err(Error::Other(format!("Server error: {error:?}"))),
        other => return unsupported(&format!("{other:?}")),
    }
    Ok(())
}

impl wit::Host for HostState {}

impl wit::HostConnection for HostState {
    fn drop(&mut self, resource: Resource<RedisConnection>) -> wasmtime::Result<()> {
        close_connection(self, resource)
    }
}

impl wit::HostConnectionWithStore<HostState> for HasSelf<HostState> {
    async fn open(
        accessor: &Accessor<HostState, Self>,
        address: String,
    ) -> Outcome<Resource<RedisConnection>> {
        open_connection(
            accessor,
            address,
            "redis",
            Error::InvalidAddress,
            |component, address| async move {
                match component.redis.connection(&address).await {
                    Ok(connection) => Ok(RedisConnection { connection }),
                    Err(error) => Err(Error::Other(format!("connecting to Redis: {error}"))),
                }
            },
        )
        .await
    }

    async fn publish(
        accessor: &Accessor<HostState, Self>,
        this: Resource<RedisConnection>,
        channel: String,
        payload: Vec<u8>,
    ) -> Outcome<()> {
        let mut command = redis::cmd("PUBLISH");
        command.arg(channel).arg(payload);
        run::<i64>(accessor, &this, "publish", command)
            .await
            .map(|r| r.map(drop))
    }

    async fn get(
        accessor: &Accessor<HostState, Self>,
        this: Resource<RedisConnection>,
        key: String,
    ) -> Outcome<Option<Vec<u8>>> {
        let mut command = redis::cmd("GET");
        command.arg(key);
        run(accessor, &this, "get", command).await
    }

    async fn set(
        accessor: &Accessor<HostState, Self>,
        this: Resource<RedisConnection>,
        key: String,
        value: Vec<u8>,
    ) -> Outcome<()> {
        let mut command = redis::cmd("SET");
        command.arg(key).arg(value);
        run(accessor, &this, "set", command).await
    }

    async fn incr(
        accessor: &Accessor<HostState, Self>,
        this: Resource<RedisConnection>,
        key: String,
    ) -> Outcome<i64> {
        let mut command = redis::cmd("INCR");
        command.arg(key);
        run(accessor, &this, "incr", command).await
    }

    async fn del(
        accessor: &Accessor<HostState, Self>,
        this: Resource<RedisConnection>,
        keys: Vec<String>,
    ) -> Outcome<u32> {
        let mut command = redis::cmd("DEL");
        command.arg(keys);
        run(accessor, &this, "del", command).await
    }

    async fn sadd(
        accessor: &Accessor<HostState, Self>,
        this: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> Outcome<u32> {
        let mut command = redis::cmd("SADD");
        command.arg(key).arg(values);
        run_mapping_errors(accessor, &this, "sadd", command, |error| {
            match error.kind() {
                ErrorKind::UnexpectedReturnType => Error::TypeError,
                _ => to_wit_error(error),
            }
        })
        .await
    }

    async fn smembers(
        accessor: &Accessor<HostState, Self>,
        this: Resource<RedisConnection>,
        key: String,
    ) -> Outcome<Vec<String>> {
        let mut command = redis::cmd("SMEMBERS");
        command.arg(key);
        run(accessor, &this, "smembers", command).await
    }

    async fn srem(
        accessor: &Accessor<HostState, Self>,
        this: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> Outcome<u32> {
        let mut command = redis::cmd("SREM");
        command.arg(key).arg(values);
        run(accessor, &this, "srem", command).await
    }

    async fn execute(
        accessor: &Accessor<HostState, Self>,
        this: Resource<RedisConnection>,
        command_name: String,
        arguments: Vec<RedisParameter>,
    ) -> Outcome<Vec<RedisResult>> {
        let mut command = redis::cmd(&command_name);
        for argument in arguments {
            match argument {
                RedisParameter::Int64(n) => command.arg(n),
                RedisParameter::Binary(bytes) => command.arg(bytes),
            };
        }
        Ok(run::<Value>(accessor, &this, "execute", command)
            .await?
            .and_then(|value| {
                let mut results = Vec::new();
                flatten(value, &mut results)?;
                Ok(results)
            }))
    }
}
