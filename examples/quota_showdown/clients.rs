//! Client set-up: every strategy's clients, built from what a user has and nothing else.
//!
//! A user configuring a client for a quota knows three things: the numbers the provider's
//! console shows ([`Console`]: tokens per minute and per day and requests per minute per model
//! and region, capacity units per table), their own applications and intent ([`Plan`]: which app calls which
//! model, which is batch work, the fallback order, the shares they want), and an endpoint to
//! send calls to ([`Handle`]). [`build`] takes exactly those. It never sees the simulator: not
//! its start, not where its quota windows fall, not its statistics, and `tests/showdown.rs`
//! checks both that building every strategy's clients reads nothing from the simulator and
//! that this file and `sdk.rs` do not name the simulator's inspection methods.
//!
//! The quotas a user writes are in one function each, [`bedrock_limit`] and
//! [`dynamodb_limit`]: the console's numbers, nothing tuned to the scenario. The retry policy
//! and breaker are the [`Profile`]'s defaults, their jitter seeded for repeatable runs
//! (`StackBuilder::seed`, `SdkHeadroomBuilder::seed`); the call's wait budget is the
//! profile's default for the app's priority.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_smithy_runtime_api::client::http::SharedHttpClient;
use tokio::time::Instant;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceBuilder, ServiceExt};
use tower_headroom::Outcome;
use tower_headroom::admission::{Cost, Limit, Priority, Quota, SlotStats, Tenant, Usage};
use tower_headroom::bedrock::ModelTable;
use tower_headroom::classify::Classify;
use tower_headroom::dynamodb::{
    self, Access, PartitionCeiling, PartitionCeilingLayer, PartitionUnits, TableLimits,
};
use tower_headroom::fallback::Target;
use tower_headroom::sim::{
    DynamoCall, DynamoReply, ModelCall, ModelReply, Op, SimClassifier, SimError,
};
use tower_headroom::stack::{Profile, StackBuilder};

use super::scenarios::Strategy;

/// The wall clock of the client machines at the run's first instant: 2023-11-14T22:13:20Z.
/// Any fixed instant will do; it only has to repeat. The SDK rows read it through their
/// `TimeSource`.
pub const CLIENT_EPOCH: Duration = Duration::from_secs(1_700_000_000);

/// The partition key attribute of the user's DynamoDB table (their schema).
pub const PARTITION_KEY: &str = "pk";

/// What the provider's console shows for the account: the quotas, as configured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Console {
    /// Per model and region.
    pub models: Vec<ModelQuota>,
    /// Per DynamoDB table.
    pub tables: Vec<TableQuota>,
}

/// One model's quotas in one region, as the console shows them.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelQuota {
    /// The model id.
    pub model: String,
    /// The region.
    pub region: String,
    /// Tokens per minute.
    pub tpm: u64,
    /// Tokens per day (by default `tpm × 1440`; the console shows the account's number).
    pub tpd: u64,
    /// Requests per minute; `None` where the service enforces none (bedrock-runtime today).
    pub rpm: Option<u64>,
}

/// One table's provisioned capacity, as the console shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct TableQuota {
    /// The table name.
    pub table: String,
    /// Read capacity units.
    pub rcu: u64,
    /// Write capacity units.
    pub wcu: u64,
}

impl Console {
    /// The quotas of `model` in `region`.
    pub fn model(&self, model: &str, region: &str) -> Result<&ModelQuota, BoxError> {
        self.models
            .iter()
            .find(|m| m.model == model && m.region == region)
            .ok_or_else(|| format!("the console shows no quota for {model} in {region}").into())
    }

    /// The capacity of `table`.
    pub fn table(&self, table: &str) -> Result<&TableQuota, BoxError> {
        self.tables
            .iter()
            .find(|t| t.table == table)
            .ok_or_else(|| format!("the console shows no table {table}").into())
    }
}

/// An application of a scenario.
#[derive(Clone, Debug)]
pub struct App {
    /// Its label (also the caller label of its direct calls).
    pub name: &'static str,
    /// The model it calls (its primary target), or the table it writes.
    pub model: &'static str,
    /// The region.
    pub region: &'static str,
    /// Batch work (waits behind interactive calls under tower-headroom).
    pub batch: bool,
}

/// A target of the user's fallback order: its name, model (or table) and region.
#[derive(Clone, Copy, Debug)]
pub struct RouteTarget {
    /// The target's name (breaker, metrics).
    pub name: &'static str,
    /// The model id, or the table.
    pub model: &'static str,
    /// The region.
    pub region: &'static str,
}

/// A route target.
pub const fn route(name: &'static str, model: &'static str, region: &'static str) -> RouteTarget {
    RouteTarget {
        name,
        model,
        region,
    }
}

/// What the user decides: their apps, the fallback order, and the shares of the quota they
/// want each app to have (app order), if any.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The applications.
    pub apps: Vec<App>,
    /// Targets in preference order (the first is every app's primary).
    pub routes: Vec<RouteTarget>,
    /// Guaranteed shares of the quota, one weight per app.
    pub shares: Option<Vec<u64>>,
}

/// A simulated Bedrock or DynamoDB endpoint as a client library sees it: something to call.
pub type BedrockService = BoxCloneSyncService<ModelCall, ModelReply, SimError>;
/// See [`BedrockService`].
pub type DynamoService = BoxCloneSyncService<DynamoCall, DynamoReply, SimError>;

/// The service's calls, in process.
#[derive(Clone)]
pub enum Direct {
    /// Bedrock model calls.
    Bedrock(BedrockService),
    /// DynamoDB writes.
    Dynamo(DynamoService),
    /// HTTP requests to an OpenAI-compatible endpoint (see `http_clients.rs`).
    Http(crate::http_clients::HttpService),
}

/// Where a client sends its calls: the service in process (the direct strategies and the
/// stack), and the same service behind its AWS wire protocol, as the SDK's HTTP client.
#[derive(Clone)]
pub struct Handle {
    /// The calls, as a `tower` service.
    pub direct: Direct,
    /// The wire front, as an SDK HTTP client.
    pub wire: SharedHttpClient,
}

/// What one request asks of the backend.
#[derive(Clone, Debug)]
pub enum Work {
    /// A model call: input tokens and `maxTokens`.
    Model { input_tokens: u64, max_tokens: u64 },
    /// A DynamoDB write: partition key and payload bytes.
    Write { key: Arc<str>, payload: u64 },
    /// A DynamoDB read (`GetItem`) of the item under `key`, strongly consistent or not.
    Read { key: Arc<str>, consistent: bool },
    /// A chat completion over HTTP: input tokens and `max_tokens`.
    Chat { input_tokens: u64, max_tokens: u64 },
}

impl Work {
    /// The item size a write is charged for: attribute names plus values of
    /// `{ pk: S key, payload: S "x" × payload }`.
    pub fn item_bytes(key: &str, payload: u64) -> u64 {
        (PARTITION_KEY.len() + key.len() + "payload".len()) as u64 + payload
    }
}

/// A client for one application: takes its work, answers when it completed or failed.
pub type Client = tower::util::BoxCloneService<Work, (), BoxError>;

/// Reads the client's own learned limit (units per window of its primary target) at an
/// instant: the effective limit of its `Quota`, not the provider's.
pub type LimitProbe = Arc<dyn Fn(Instant) -> Option<SlotStats> + Send + Sync>;

/// Whether the client's own hot-key report names the scenario's hot key at an instant.
pub type HotKeyProbe = Arc<dyn Fn(Instant) -> bool + Send + Sync>;

/// Every app's client, and for strategies with admission a probe of the shared quota.
pub struct Clients {
    /// One per app, in plan order.
    pub apps: Vec<Client>,
    /// The primary target's quota statistics (its effective limits), for strategies that have one.
    pub effective_limit: Option<LimitProbe>,
    /// For clients with a hot-key report (the tower-headroom DynamoDB rows).
    pub hot_key_report: Option<HotKeyProbe>,
}

/// Builds `strategy`'s clients for `plan`'s apps from the console's numbers and the handle.
pub fn build(
    strategy: Strategy,
    console: &Console,
    plan: &Plan,
    handle: &Handle,
    seed: u64,
) -> Result<Clients, BoxError> {
    let plain = |apps| Clients {
        apps,
        effective_limit: None,
        hot_key_report: None,
    };
    if let Direct::Http(service) = &handle.direct {
        return crate::http_clients::build(strategy, console, plan, service, seed);
    }
    match strategy {
        Strategy::NoRetry => Ok(plain(plain_clients(plan, &handle.direct, 1))),
        Strategy::NaiveRetry => Ok(plain(plain_clients(plan, &handle.direct, 5))),
        Strategy::SdkStandard | Strategy::SdkAdaptive => Ok(plain(super::sdk::clients(
            plan,
            handle,
            strategy == Strategy::SdkAdaptive,
            seed,
        )?)),
        Strategy::Headroom => match &handle.direct {
            Direct::Bedrock(service) => bedrock_stacks(console, plan, service, seed),
            Direct::Dynamo(service) => dynamodb_stacks(console, plan, service, seed),
            Direct::Http(_) => Err("handled above".into()),
        },
        Strategy::SdkHeadroom => super::sdk::headroom_clients(console, plan, handle, seed),
        Strategy::VendorSdk => Err("the vendor SDKs' retry is measured on HTTP endpoints".into()),
    }
}

/// The quota a user writes for a Bedrock model from its console numbers: tokens per minute,
/// tokens per day and, where the service enforces one, requests per minute; `shares` is their
/// intent. Nothing else: no burst credit, reserve, wait or learning setting of our own.
pub fn bedrock_limit(quota: &ModelQuota, shares: Option<&[u64]>) -> Result<Limit, BoxError> {
    let mut limit = Profile::Bedrock
        .limit()
        .units(quota.tpm)
        .units_per_day(quota.tpd);
    if let Some(rpm) = quota.rpm {
        limit = limit.requests(rpm);
    }
    if let Some(shares) = shares {
        limit = limit.shares(shares);
    }
    Ok(limit.build()?)
}

/// The quota a user writes for a DynamoDB table: its provisioned write capacity per second,
/// with the 300 s of burst credit DynamoDB documents (the default of keys no table names).
pub fn dynamodb_limit(table: &TableQuota) -> Result<Limit, BoxError> {
    Ok(Profile::DynamoDb.limit().units(table.wcu).build()?)
}

/// The quota shared by every app of `plan`: each target's limit from its console numbers.
fn quota_of<K, F>(
    plan: &Plan,
    key: F,
    limit: impl Fn(&RouteTarget) -> Result<Limit, BoxError>,
) -> Result<Quota<K>, BoxError>
where
    K: std::hash::Hash + Eq + Clone + Send + Sync,
    F: Fn(&RouteTarget) -> K,
{
    let (primary, others) = plan.routes.split_first().ok_or("a plan needs a target")?;
    let mut builder = Quota::builder(limit(primary)?);
    for target in others {
        builder = builder.key_limit(key(target), limit(target)?);
    }
    Ok(builder.build())
}

/// The Bedrock quota of `plan`, keyed by `key`.
pub fn bedrock_quota<K, F>(console: &Console, plan: &Plan, key: F) -> Result<Quota<K>, BoxError>
where
    K: std::hash::Hash + Eq + Clone + Send + Sync,
    F: Fn(&RouteTarget) -> K,
{
    quota_of(plan, key, |t| {
        bedrock_limit(console.model(t.model, t.region)?, plan.shares.as_deref())
    })
}

/// The DynamoDB quota of `plan`: one line per table, its reads (`"orders:read"`, from its
/// RCU) and writes (`"orders:write"`, from its WCU) on their own keys, as the console shows
/// them (`TableLimits::table`).
pub fn dynamodb_quota(console: &Console, plan: &Plan) -> Result<Quota<Arc<str>>, BoxError> {
    let primary = plan.routes.first().ok_or("a plan needs a target")?;
    let mut builder = Quota::builder(dynamodb_limit(console.table(primary.model)?)?);
    for target in &plan.routes {
        let table = console.table(target.model)?;
        builder = builder.table(&table.table, table.rcu, table.wcu)?;
    }
    Ok(builder.build())
}

/// The units of a DynamoDB call on its table's key, as DynamoDB counts them: one WCU per
/// started KB of a write, a read's 4 KB blocks in half RCUs (`dynamodb::read_half_units`).
pub fn dynamo_units(call: &DynamoCall) -> u64 {
    match call.op {
        Op::Write => dynamodb::write_units(call.item_bytes),
        Op::Read { consistent } => dynamodb::read_half_units(
            call.item_bytes,
            dynamodb::Read::consistent(Some(consistent)),
        ),
    }
}

/// The user's per-key ceiling and hot-key report for their DynamoDB clients: the defaults,
/// seeded for repeatable hashes, no gauges (the showdown reads the report).
pub fn partition_ceiling(seed: u64) -> Result<Arc<PartitionCeiling>, BoxError> {
    Ok(Arc::new(
        PartitionCeiling::builder()
            .salt(seed)
            .metrics(false)
            .build()?,
    ))
}

/// A probe of `ceiling`'s report: whether the heaviest key of `table`'s writes is `key`.
pub fn names_hot_key(ceiling: Arc<PartitionCeiling>, table: &str, key: &str) -> HotKeyProbe {
    let table: Arc<str> = Arc::from(table);
    let id = ceiling.id(key.as_bytes());
    Arc::new(move |now| {
        ceiling
            .report(&table, Access::Write, now)
            .is_some_and(|r| r.by_units().first().is_some_and(|top| top.id == id))
    })
}

/// The client machines' wall clock: [`CLIENT_EPOCH`] plus the virtual time since `start`.
pub fn client_clock(start: Instant) -> SystemTime {
    SystemTime::UNIX_EPOCH + CLIENT_EPOCH + start.elapsed()
}

/// The request the service sees for `work` sent by `app`.
pub fn model_call(app: &App, work: Work) -> ModelCall {
    match work {
        Work::Model {
            input_tokens,
            max_tokens,
        } => ModelCall::new(app.model, app.region, input_tokens, max_tokens).caller(app.name),
        // A scenario's apps all send one kind of work.
        Work::Write { .. } | Work::Read { .. } | Work::Chat { .. } => {
            ModelCall::new(app.model, app.region, 0, 0)
        }
    }
}

/// The size of the items reads find (one read unit, strongly consistent or not): what the
/// SDK rows' `GetItem` on an empty store is charged too.
pub const READ_ITEM_BYTES: u64 = 1_000;

/// The write or read the service sees for `work` sent by `app`.
pub fn dynamo_call(app: &App, work: Work) -> DynamoCall {
    match work {
        Work::Write { key, payload } => {
            let bytes = Work::item_bytes(&key, payload);
            DynamoCall::write(app.model, key, bytes).caller(app.name)
        }
        Work::Read { key, consistent } => {
            DynamoCall::read(app.model, key, READ_ITEM_BYTES, consistent).caller(app.name)
        }
        Work::Model { .. } | Work::Chat { .. } => DynamoCall::write(app.model, "", 0),
    }
}

/// Calls the service directly, up to `attempts` times, 1 s apart, on any error: no retry
/// (`attempts` 1) and the naive baseline (5).
fn plain_clients(plan: &Plan, direct: &Direct, attempts: u32) -> Vec<Client> {
    plan.apps
        .iter()
        .map(|app| {
            let app = app.clone();
            let direct = direct.clone();
            let client = tower::service_fn(move |work: Work| {
                let app = app.clone();
                let direct = direct.clone();
                async move {
                    for attempt in 1..=attempts {
                        let result = match &direct {
                            Direct::Bedrock(service) => service
                                .clone()
                                .oneshot(model_call(&app, work.clone()))
                                .await
                                .map(drop),
                            Direct::Dynamo(service) => service
                                .clone()
                                .oneshot(dynamo_call(&app, work.clone()))
                                .await
                                .map(drop),
                            Direct::Http(_) => return Err(BoxError::from("see http_clients.rs")),
                        };
                        match result {
                            Ok(()) => return Ok(()),
                            Err(e) if attempt == attempts => return Err(BoxError::from(e)),
                            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                        }
                    }
                    Err(BoxError::from("no attempt made"))
                }
            });
            Client::new(client)
        })
        .collect()
}

/// The stack's view of the service's answers: the fallback router annotates
/// `http::Response`s, so the reply travels as one.
#[derive(Clone, Copy, Debug, Default)]
pub struct HttpSimClassifier;

impl<R> Classify<http::Response<R>> for HttpSimClassifier
where
    SimClassifier: Classify<R>,
{
    fn classify(
        &self,
        result: Result<&http::Response<R>, &(dyn std::error::Error + 'static)>,
    ) -> Outcome {
        match result {
            Ok(response) => SimClassifier.classify(Ok(response.body())),
            Err(error) => SimClassifier.classify(Err::<&R, _>(error)),
        }
    }
}

/// A target of the stack: which model in which region (or which table).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    model: Arc<str>,
    region: Arc<str>,
}

impl Key {
    fn of(route: &RouteTarget) -> Key {
        Key {
            model: route.model.into(),
            region: route.region.into(),
        }
    }
}

fn target(route: &RouteTarget) -> Target<Key> {
    Target::new(route.name, Key::of(route))
        .model(route.model)
        .region(route.region)
}

type Boxed = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

/// The quota statistics of `quota`'s `key` (its effective limits), as a probe.
pub fn probe<K>(quota: Quota<K>, key: K) -> LimitProbe
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
{
    Arc::new(move |now| quota.stats(&key, now))
}

/// tower-headroom on Bedrock: one stack per application, sharing one quota per target.
fn bedrock_stacks(
    console: &Console,
    plan: &Plan,
    service: &BedrockService,
    seed: u64,
) -> Result<Clients, BoxError> {
    // The service's reply, as an `http::Response` for the router.
    let backend = ServiceBuilder::new()
        .map_response(http::Response::new as fn(ModelReply) -> http::Response<ModelReply>)
        .service(service.clone());
    let rewrite = |call: &mut ModelCall, key: &Key| {
        call.model_id = Arc::clone(&key.model);
        call.region = Arc::clone(&key.region);
    };
    // What Bedrock reserves: input, cache tokens and `maxTokens` (the model's maximum, from
    // the public model table, when the call sets none).
    let table = ModelTable::builtin();
    let estimate = move |call: &ModelCall| {
        Cost::units(table.spec(&call.model_id).reservation(
            call.input_tokens,
            call.cache_read_tokens,
            call.cache_write_tokens,
            call.max_tokens,
        ))
    };
    let usage = |reply: &http::Response<ModelReply>| Usage::units(reply.body().quota_tokens);

    let quota: Quota<Key> = bedrock_quota(console, plan, Key::of)?;
    let targets: Vec<Target<Key>> = plan.routes.iter().map(target).collect();
    let apps = plan
        .apps
        .iter()
        .enumerate()
        .map(|(i, app)| {
            let app_seed = seed.wrapping_add(i as u64);
            let mut builder = StackBuilder::bedrock(HttpSimClassifier);
            for t in &targets {
                builder = builder.target(t.clone());
            }
            let mut builder = builder
                .seed(app_seed)
                .admission(quota.clone(), estimate.clone())
                .usage(usage);
            if plan.shares.is_some() {
                builder = builder.tenant(Tenant(i as u16));
            }
            if app.batch {
                builder = builder.priority(Priority::Batch);
            }
            let stack = builder.rewrite(backend.clone(), rewrite)?;
            let app = app.clone();
            let client = tower::service_fn(move |work: Work| -> Boxed {
                let call = model_call(&app, work);
                let stack = stack.clone();
                Box::pin(async move { stack.oneshot(call).await.map(drop) })
            });
            Ok(Client::new(client))
        })
        .collect::<Result<Vec<_>, BoxError>>()?;
    let primary = plan.routes.first().ok_or("a plan needs a target")?;
    Ok(Clients {
        apps,
        effective_limit: Some(probe(quota, Key::of(primary))),
        hot_key_report: None,
    })
}

/// tower-headroom on DynamoDB: the DynamoDB profile and the table's quota (see
/// [`dynamodb_quota`]: reads and writes on their own keys), each app's reads and writes through
/// their own stack (a target keyed by the table's read or write key), and in front of both the
/// per-key ceiling with its hot-key report, shared by every app (the partition key is the
/// user's schema, [`PARTITION_KEY`]).
fn dynamodb_stacks(
    console: &Console,
    plan: &Plan,
    service: &DynamoService,
    seed: u64,
) -> Result<Clients, BoxError> {
    let backend = ServiceBuilder::new()
        .map_response(http::Response::new as fn(DynamoReply) -> http::Response<DynamoReply>)
        .service(service.clone());
    let quota = dynamodb_quota(console, plan)?;
    let estimate = |call: &DynamoCall| Cost::units(dynamo_units(call));
    let write_usage = |reply: &http::Response<DynamoReply>| {
        Usage::units(reply.body().consumed_capacity.ceil() as u64)
    };
    let read_usage = |reply: &http::Response<DynamoReply>| {
        dynamodb::rcu_to_half_units(reply.body().consumed_capacity)
            .map_or(Usage::UNKNOWN, Usage::units)
    };
    let ceiling = partition_ceiling(seed)?;
    let per_key = PartitionCeilingLayer::new(
        Arc::clone(&ceiling),
        HttpSimClassifier,
        |call: &DynamoCall| {
            let access = match call.op {
                Op::Write => Access::Write,
                Op::Read { .. } => Access::Read,
            };
            Some(PartitionUnits::new(
                Arc::clone(&call.table),
                access,
                call.partition_key.as_bytes(),
                dynamo_units(call),
            ))
        },
    );
    let targets = |access: Access| -> Vec<Target<Arc<str>>> {
        plan.routes
            .iter()
            .map(|route| {
                Target::new(route.name, Arc::from(dynamodb::key(route.model, access)))
                    .model(route.model)
                    .region(route.region)
            })
            .collect()
    };
    let apps = plan
        .apps
        .iter()
        .enumerate()
        .map(|(i, app)| {
            let app_seed = seed.wrapping_add(i as u64);
            let stack = |access: Access| {
                let mut builder = StackBuilder::dynamodb(HttpSimClassifier);
                for t in targets(access) {
                    builder = builder.target(t);
                }
                builder.seed(app_seed).admission(quota.clone(), estimate)
            };
            let writes = stack(Access::Write)
                .usage(write_usage)
                .services(vec![backend.clone(); plan.routes.len()])?;
            let reads = stack(Access::Read)
                .usage(read_usage)
                .services(vec![backend.clone(); plan.routes.len()])?;
            let writes = ServiceBuilder::new().layer(per_key.clone()).service(writes);
            let reads = ServiceBuilder::new().layer(per_key.clone()).service(reads);
            let app = app.clone();
            let client = tower::service_fn(move |work: Work| -> Boxed {
                let call = dynamo_call(&app, work);
                let (writes, reads) = (writes.clone(), reads.clone());
                Box::pin(async move {
                    match call.op {
                        Op::Write => writes.oneshot(call).await.map(drop),
                        Op::Read { .. } => reads.oneshot(call).await.map(drop),
                    }
                })
            });
            Ok(Client::new(client))
        })
        .collect::<Result<Vec<_>, BoxError>>()?;
    let primary = plan.routes.first().ok_or("a plan needs a target")?;
    Ok(Clients {
        apps,
        effective_limit: Some(probe(quota, Arc::from(dynamodb::write_key(primary.model)))),
        hot_key_report: Some(names_hot_key(
            ceiling,
            primary.model,
            super::scenarios::dynamodb::HOT_KEY,
        )),
    })
}
