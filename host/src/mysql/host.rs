//! The host functions of `spin:mysql/mysql@3.0.0`.
//!
//! As under Spin 4.1, every statement is a prepared statement (the binary protocol, one
//! statement per call, no multi-statement text), and errors come back as Spin's variants: a
//! statement MySQL refuses is `query-failed` with the driver's debug text (which carries the
//! server's error code), a failure while streaming rows is `other`.
//!
//! `query` returns the columns as soon as MySQL sends them and streams rows to the guest as
//! they arrive, through a bounded channel, so a large result never sits in host memory. The
//! final outcome (an error mid-stream, or success) arrives on the returned future.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use mysql_async::prelude::Queryable;
use mysql_async::{BinaryProtocol, Params, QueryResult};
use tokio::sync::{mpsc, oneshot};
use wasmtime::StoreContextMut;
use wasmtime::component::{
    Accessor, Destination, FutureReader, HasSelf, Resource, StreamProducer, StreamReader,
    StreamResult, VecBuffer,
};

use super::convert;
use super::pool::SharedConn;
use super::session::Step;
use super::{InUse, MysqlConnection};
use crate::bindings::mysql::{self as wit, Column, DbDataType, Error, ParameterValue, Row};
use crate::metrics::Backend;
use crate::state::{HostState, calling_component, close_connection, open_connection};

type Outcome<T> = wasmtime::Result<Result<T, Error>>;
type QueryOutput = (
    Vec<Column>,
    StreamReader<Row>,
    FutureReader<Result<(), Error>>,
);

/// Rows buffered between MySQL and a guest that reads slowly.
const ROW_BUFFER: usize = 64;

/// A statement MySQL refused or could not run, as Spin reports it.
fn query_failed(error: mysql_async::Error) -> Error {
    Error::QueryFailed(format!("{error:?}"))
}

/// A failure while rows were streaming, as Spin reports it.
fn stream_failed(error: mysql_async::Error) -> Error {
    Error::Other(error.to_string())
}

fn params(values: Vec<ParameterValue>) -> Params {
    Params::Positional(values.into_iter().map(convert::parameter).collect())
}

/// The guest's session, with `statement` noted for its release, and what the host does
/// for it.
fn session_for(
    accessor: &Accessor<HostState, HasSelf<HostState>>,
    resource: &Resource<MysqlConnection>,
    statement: &str,
    skippable: bool,
) -> wasmtime::Result<(SharedConn, Step)> {
    accessor.with(|mut access| {
        Ok(access
            .get()
            .table
            .get(resource)?
            .session_for(statement, skippable))
    })
}

/// Runs the restore a [`Step::Run`] asks for before the guest's statement. If it fails the
/// session is reset at its release, and the guest gets the error for its statement.
async fn restore_first(
    accessor: &Accessor<HostState, HasSelf<HostState>>,
    resource: &Resource<MysqlConnection>,
    connection: &SharedConn,
    restore: Option<String>,
) -> Outcome<()> {
    let Some(restore) = restore else {
        return Ok(Ok(()));
    };
    let Err(error) = connection.lock().await.query_drop(restore).await else {
        return Ok(Ok(()));
    };
    accessor.with(|mut access| -> wasmtime::Result<()> {
        access.get().table.get(resource)?.session().restore_failed();
        Ok(())
    })?;
    Ok(Err(query_failed(error)))
}

/// Feeds the rows of a result set into `rows`, after sending its columns on `columns`.
async fn stream_result(
    mut result: QueryResult<'_, '_, BinaryProtocol>,
    columns: oneshot::Sender<Vec<Column>>,
    rows: mpsc::Sender<Row>,
) -> Result<(), Error> {
    let meta = result.columns().unwrap_or_default();
    let types: Vec<DbDataType> = meta.iter().map(convert::data_type).collect();
    // The receiver is gone only if the host function itself went away.
    let _ = columns.send(meta.iter().map(convert::column).collect());
    while let Some(row) = result.next().await.map_err(stream_failed)? {
        let converted = row
            .unwrap()
            .into_iter()
            .zip(types.iter().zip(meta.iter()))
            .map(|(value, (ty, column))| {
                convert::db_value(value, *ty).map_err(|value| {
                    Error::ValueConversionFailed(format!(
                        "Cannot convert value {value:?} in column {} ({:?}) data type {ty:?}",
                        column.name_str(),
                        column.column_type()
                    ))
                })
            })
            .collect::<Result<Row, Error>>();
        // Spin fails the whole query on a value it cannot convert; the rest of the result
        // is discarded so the session stays usable.
        let converted = match converted {
            Ok(converted) => converted,
            Err(error) => {
                result.drop_result().await.map_err(stream_failed)?;
                return Err(error);
            }
        };
        if rows.send(converted).await.is_err() {
            // The guest stopped reading: discard the rest so the session stays usable.
            return result.drop_result().await.map_err(stream_failed);
        }
    }
    result.drop_result().await.map_err(stream_failed)
}

/// Delivers rows from the channel to the guest's `stream<row>`.
struct RowProducer(mpsc::Receiver<Row>);

impl<D> StreamProducer<D> for RowProducer {
    type Item = Row;
    type Buffer = VecBuffer<Row>;

    fn poll_produce<'a>(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut store: StoreContextMut<'a, D>,
        mut destination: Destination<'a, Row, VecBuffer<Row>>,
        finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        let capacity = destination.remaining(&mut store);
        if capacity == Some(0) {
            return Poll::Ready(Ok(StreamResult::Completed));
        }
        let receiver = &mut self.get_mut().0;
        match receiver.poll_recv(cx) {
            Poll::Ready(Some(first)) => {
                let mut batch = vec![first];
                let limit = capacity.unwrap_or(ROW_BUFFER).min(ROW_BUFFER);
                while batch.len() < limit {
                    match receiver.try_recv() {
                        Ok(row) => batch.push(row),
                        Err(_) => break,
                    }
                }
                destination.set_buffer(batch.into());
                Poll::Ready(Ok(StreamResult::Completed))
            }
            Poll::Ready(None) => Poll::Ready(Ok(StreamResult::Dropped)),
            Poll::Pending if finish => Poll::Ready(Ok(StreamResult::Cancelled)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl wit::Host for HostState {}

impl wit::HostConnection for HostState {
    fn drop(&mut self, resource: Resource<MysqlConnection>) -> wasmtime::Result<()> {
        close_connection(self, resource)
    }
}

impl wit::HostConnectionWithStore<HostState> for HasSelf<HostState> {
    async fn open(
        accessor: &Accessor<HostState, Self>,
        address: String,
    ) -> Outcome<Resource<MysqlConnection>> {
        let refused =
            Error::ConnectionFailed("address not permitted by allowed_outbound_hosts".to_owned());
        open_connection(
            accessor,
            address,
            "mysql",
            refused,
            |component, address| async move {
                let started = Instant::now();
                let acquired = component.mysql.acquire(&address).await;
                component.metrics.backend_call(
                    Backend::Mysql,
                    "open",
                    acquired.is_ok(),
                    started.elapsed(),
                );
                let checkout =
                    acquired.map_err(|error| Error::ConnectionFailed(error.to_string()))?;
                let in_use = InUse::new(&component.metrics.mysql_connections_in_use);
                Ok(MysqlConnection::new(checkout, in_use))
            },
        )
        .await
    }

    async fn query(
        accessor: &Accessor<HostState, Self>,
        this: Resource<MysqlConnection>,
        statement: String,
        parameters: Vec<ParameterValue>,
    ) -> Outcome<QueryOutput> {
        // A query's caller reads a result, so it is never skipped.
        let (connection, step) = session_for(accessor, &this, &statement, false)?;
        let metrics = calling_component(accessor).metrics.clone();
        let started = Instant::now();
        if let Step::Run { restore } = step
            && let Err(error) = restore_first(accessor, &this, &connection, restore).await?
        {
            return Ok(Err(error));
        }
        let (columns_tx, columns_rx) = oneshot::channel();
        let (rows_tx, rows_rx) = mpsc::channel(ROW_BUFFER);
        let (done_tx, done_rx) = oneshot::channel();
        // The query runs on its own task so rows keep flowing after this call returns.
        tokio::spawn(async move {
            let mut connection = connection.lock_owned().await;
            let outcome = match connection.exec_iter(statement, params(parameters)).await {
                Ok(result) => stream_result(result, columns_tx, rows_tx).await,
                Err(error) => Err(query_failed(error)),
            };
            let _ = done_tx.send(outcome);
        });
        let columns = columns_rx.await;
        metrics.backend_call(Backend::Mysql, "query", columns.is_ok(), started.elapsed());
        let columns = match columns {
            Ok(columns) => columns,
            // The task ended before any columns: the statement failed.
            Err(_) => {
                let error =
                    done_rx.await.ok().and_then(Result::err).unwrap_or_else(|| {
                        Error::Other("the query ended without a result".to_owned())
                    });
                return Ok(Err(error));
            }
        };
        let (rows, outcome) = accessor.with(|mut access| -> wasmtime::Result<_> {
            let rows = StreamReader::new(&mut access, RowProducer(rows_rx))?;
            let outcome = FutureReader::new(&mut access, async move {
                let outcome = done_rx.await.unwrap_or_else(|_| {
                    Err(Error::Other("the query task ended unexpectedly".to_owned()))
                });
                Ok::<_, wasmtime::Error>(outcome)
            })?;
            Ok((rows, outcome))
        })?;
        Ok(Ok((columns, rows, outcome)))
    }

    async fn execute(
        accessor: &Accessor<HostState, Self>,
        this: Resource<MysqlConnection>,
        statement: String,
        parameters: Vec<ParameterValue>,
    ) -> Outcome<()> {
        let (connection, step) = session_for(accessor, &this, &statement, true)?;
        let Step::Run { restore } = step else {
            return Ok(Ok(()));
        };
        let metrics = calling_component(accessor).metrics.clone();
        let started = Instant::now();
        if let Err(error) = restore_first(accessor, &this, &connection, restore).await? {
            return Ok(Err(error));
        }
        let mut connection = connection.lock().await;
        let outcome = connection.exec_drop(statement, params(parameters)).await;
        metrics.backend_call(
            Backend::Mysql,
            "execute",
            outcome.is_ok(),
            started.elapsed(),
        );
        Ok(outcome.map_err(query_failed))
    }
}
