//! Durable storage in redb (an embedded ACID key-value store).
//!
//! Tables: `meta` (head block, genesis, chain config), `accounts`, `owners`, `subnets`
//! (one JSON document per subnet), `blocks` (headers by number) and `mempool` (accepted
//! transactions of the pending block, by arrival sequence).
//!
//! **Invariant:** a block is one redb write transaction: the changed state, the header, the
//! new head and the emptied mempool commit together or not at all. An accepted transaction is
//! its own committed write to `mempool` before it is acknowledged. After a crash, opening the
//! store gives the last committed block plus the accepted transactions to replay on top.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable, TableDefinition};
use serde::{Serialize, de::DeserializeOwned};

use ganglion_chain::api::{AccountId, BlockHeader};
use crate::state::{Account, ChainConfig, State};
use ganglion_chain::tx::SignedTransaction;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const ACCOUNTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("accounts");
const OWNERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("owners");
const SUBNETS: TableDefinition<u16, &[u8]> = TableDefinition::new("subnets");
const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const MEMPOOL: TableDefinition<u64, &[u8]> = TableDefinition::new("mempool");

/// The node's database.
pub struct Store {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// What [`Store::open`] found.
#[derive(Debug)]
pub struct Loaded {
    /// State at the last committed block.
    pub state: State,
    /// Chain config recorded at genesis.
    pub config: ChainConfig,
    /// Accepted, uncommitted transactions in arrival order, with their sequence numbers.
    pub mempool: Vec<(u64, SignedTransaction)>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Head {
    block: u64,
    hash: String,
    revision: u64,
}

impl Store {
    /// Open (or create) `dir/chain.redb`. Returns `None` for the loaded part if the database
    /// is new (no genesis yet).
    pub fn open(dir: &Path) -> Result<(Store, Option<Loaded>), StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Db { path: dir.display().to_string(), reason: e.to_string() })?;
        let path = dir.join("chain.redb");
        let db = Database::create(&path).map_err(|e| StoreError::Db { path: path.display().to_string(), reason: e.to_string() })?;
        let store = Store { db, path };
        let loaded = store.load()?;
        Ok((store, loaded))
    }

    fn db_err(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Db { path: self.path.display().to_string(), reason: e.to_string() }
    }

    fn corrupt(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt { path: self.path.display().to_string(), reason: e.to_string() }
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| self.corrupt(e))
    }

    fn encode<T: Serialize>(&self, value: &T) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec(value).map_err(|e| self.corrupt(e))
    }

    fn load(&self) -> Result<Option<Loaded>, StoreError> {
        let read = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let meta = match read.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.db_err(e)),
        };
        let get = |key: &str| -> Result<Vec<u8>, StoreError> {
            let value = meta.get(key).map_err(|e| self.db_err(e))?;
            value.map(|v| v.value().to_vec()).ok_or_else(|| self.corrupt(format!("missing meta `{key}`")))
        };
        let head: Head = self.decode(&get("head")?)?;
        let genesis: [u8; 32] = self.decode(&get("genesis")?)?;
        let config: ChainConfig = self.decode(&get("config")?)?;
        let mut state = State::genesis(genesis, &[]);
        state.block = head.block;
        state.block_hash = head.hash;
        state.revision = head.revision;
        let accounts = read.open_table(ACCOUNTS).map_err(|e| self.db_err(e))?;
        for item in accounts.iter().map_err(|e| self.db_err(e))? {
            let (k, v) = item.map_err(|e| self.db_err(e))?;
            let key = key_from_bytes(k.value()).ok_or_else(|| self.corrupt("account key is not 32 bytes"))?;
            let account: Account = self.decode(v.value())?;
            state.accounts.insert(key, account);
        }
        let owners = read.open_table(OWNERS).map_err(|e| self.db_err(e))?;
        for item in owners.iter().map_err(|e| self.db_err(e))? {
            let (k, v) = item.map_err(|e| self.db_err(e))?;
            let hot = key_from_bytes(k.value()).ok_or_else(|| self.corrupt("owner key is not 32 bytes"))?;
            let cold = key_from_bytes(v.value()).ok_or_else(|| self.corrupt("owner value is not 32 bytes"))?;
            state.owners.insert(hot, cold);
        }
        let subnets = read.open_table(SUBNETS).map_err(|e| self.db_err(e))?;
        for item in subnets.iter().map_err(|e| self.db_err(e))? {
            let (k, v) = item.map_err(|e| self.db_err(e))?;
            state.subnets.insert(k.value(), self.decode(v.value())?);
        }
        let mempool_table = read.open_table(MEMPOOL).map_err(|e| self.db_err(e))?;
        let mut mempool = Vec::new();
        for item in mempool_table.iter().map_err(|e| self.db_err(e))? {
            let (k, v) = item.map_err(|e| self.db_err(e))?;
            mempool.push((k.value(), self.decode(v.value())?));
        }
        state.dirty_accounts.clear();
        state.dirty_owners.clear();
        Ok(Some(Loaded { state, config, mempool }))
    }

    /// Write genesis: state at block 0, its header and the config, in one transaction.
    pub fn write_genesis(&self, state: &mut State, config: &ChainConfig, header: &BlockHeader) -> Result<(), StoreError> {
        let write = self.db.begin_write().map_err(|e| self.db_err(e))?;
        {
            let mut meta = write.open_table(META).map_err(|e| self.db_err(e))?;
            meta.insert("genesis", self.encode(&state.genesis)?.as_slice()).map_err(|e| self.db_err(e))?;
            meta.insert("config", self.encode(config)?.as_slice()).map_err(|e| self.db_err(e))?;
            // Create every table so reads never miss one.
            write.open_table(MEMPOOL).map_err(|e| self.db_err(e))?;
        }
        self.write_block_tables(&write, state, header)?;
        write.commit().map_err(|e| self.db_err(e))?;
        state.dirty_accounts.clear();
        state.dirty_owners.clear();
        Ok(())
    }

    fn write_block_tables(&self, write: &redb::WriteTransaction, state: &State, header: &BlockHeader) -> Result<(), StoreError> {
        let mut meta = write.open_table(META).map_err(|e| self.db_err(e))?;
        let head = Head { block: header.number, hash: header.hash.clone(), revision: state.revision };
        meta.insert("head", self.encode(&head)?.as_slice()).map_err(|e| self.db_err(e))?;
        let mut accounts = write.open_table(ACCOUNTS).map_err(|e| self.db_err(e))?;
        for id in &state.dirty_accounts {
            let account = state.accounts.get(id).copied().unwrap_or_default();
            accounts.insert(id.0.as_bytes().as_slice(), self.encode(&account)?.as_slice()).map_err(|e| self.db_err(e))?;
        }
        let mut owners = write.open_table(OWNERS).map_err(|e| self.db_err(e))?;
        for hot in &state.dirty_owners {
            if let Some(cold) = state.owners.get(hot) {
                owners.insert(hot.0.as_bytes().as_slice(), cold.0.as_bytes().as_slice()).map_err(|e| self.db_err(e))?;
            }
        }
        let mut subnets = write.open_table(SUBNETS).map_err(|e| self.db_err(e))?;
        for (netuid, subnet) in &state.subnets {
            subnets.insert(*netuid, self.encode(subnet)?.as_slice()).map_err(|e| self.db_err(e))?;
        }
        let mut blocks = write.open_table(BLOCKS).map_err(|e| self.db_err(e))?;
        blocks.insert(header.number, self.encode(header)?.as_slice()).map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// Commit a finalised block: changed state, header, head, and an empty mempool.
    pub fn commit_block(&self, state: &mut State, header: &BlockHeader) -> Result<(), StoreError> {
        let write = self.db.begin_write().map_err(|e| self.db_err(e))?;
        self.write_block_tables(&write, state, header)?;
        {
            let mut mempool = write.open_table(MEMPOOL).map_err(|e| self.db_err(e))?;
            mempool.retain(|_, _| false).map_err(|e| self.db_err(e))?;
        }
        write.commit().map_err(|e| self.db_err(e))?;
        state.dirty_accounts.clear();
        state.dirty_owners.clear();
        Ok(())
    }

    /// Durably record an accepted transaction under `seq`.
    pub fn append_mempool(&self, seq: u64, tx: &SignedTransaction) -> Result<(), StoreError> {
        let write = self.db.begin_write().map_err(|e| self.db_err(e))?;
        {
            let mut mempool = write.open_table(MEMPOOL).map_err(|e| self.db_err(e))?;
            mempool.insert(seq, self.encode(tx)?.as_slice()).map_err(|e| self.db_err(e))?;
        }
        write.commit().map_err(|e| self.db_err(e))
    }

    /// A committed block header.
    pub fn block(&self, number: u64) -> Result<Option<BlockHeader>, StoreError> {
        let read = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let blocks = read.open_table(BLOCKS).map_err(|e| self.db_err(e))?;
        let value = blocks.get(number).map_err(|e| self.db_err(e))?;
        value.map(|v| self.decode(v.value())).transpose()
    }
}

fn key_from_bytes(bytes: &[u8]) -> Option<AccountId> {
    let array: [u8; 32] = bytes.try_into().ok()?;
    Some(AccountId(ganglion_core::keys::PublicKey::from_bytes(array)))
}

/// Storage failures of the node.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb failed.
    #[error("chain database {path}: {reason}; check the disk and permissions of --data-dir")]
    Db {
        /// Database file.
        path: String,
        /// Underlying error.
        reason: String,
    },
    /// Stored data could not be decoded.
    #[error("chain database {path} holds undecodable data ({reason}); the data dir is corrupt or from another version")]
    Corrupt {
        /// Database file.
        path: String,
        /// Underlying error.
        reason: String,
    },
}

impl From<StoreError> for ganglion_chain::ChainError {
    fn from(err: StoreError) -> Self {
        ganglion_chain::ChainError::Node(err.to_string())
    }
}
