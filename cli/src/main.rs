//! `multiproc`: list, inspect and remove the named shared-memory segments of this user, the way
//! `ipcs`/`ipcrm` do for System V objects.
//!
//! ```text
//! multiproc ls [PREFIX] [--json]      every named segment: kind, type, size, creator, age
//! multiproc info NAME [--json]        one segment's header fields and its object's state
//! multiproc rm NAME...                remove names (mappings in use stay valid)
//! multiproc gc [PREFIX] [--dry-run]   remove segments whose creator died without persist()
//! ```

use clap::{Parser, Subcommand};
use multiproc::shm::{self, LockState, ObjectState, SegmentInfo, StaleSegment};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "multiproc",
    version,
    about = "Inspect multiproc's named shared-memory segments"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Lists named segments (all of /dev/shm that starts with PREFIX).
    Ls {
        /// Only names starting with this.
        #[arg(default_value = "")]
        prefix: String,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Shows one segment's header (kind, type, sizes, creator and whether it runs) and its
    /// object's state: a lock's owner, a queue's length, a heap's usage, ... (read-only).
    Info {
        /// The segment's name.
        name: String,
        /// A JSON object instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Removes names from /dev/shm (processes that have them mapped keep working).
    Rm {
        /// The names to remove.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Removes segments whose creator died without persist() and that nobody has open.
    Gc {
        /// Only names starting with this.
        #[arg(default_value = "")]
        prefix: String,
        /// List what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// One JSON array of what was (or would be) removed.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("multiproc: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::Ls { prefix, json } => {
            let segments = shm::list_segments(&prefix)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&segments)?);
            } else {
                print_table(&segments);
            }
        }
        Command::Info { name, json } => {
            let info = shm::segment_info(&name)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                print_info(&info);
            }
        }
        Command::Rm { names } => {
            let mut failed = 0;
            for name in &names {
                match multiproc::Segment::unlink(name) {
                    Ok(()) => println!("removed {name}"),
                    Err(e) => {
                        eprintln!("multiproc: {name}: {e}");
                        failed += 1;
                    }
                }
            }
            if failed > 0 {
                return Err(format!("{failed} of {} names not removed", names.len()).into());
            }
        }
        Command::Gc {
            prefix,
            dry_run,
            json,
        } => {
            let stale = if dry_run {
                shm::stale_segments(&prefix)?
            } else {
                shm::remove_stale_segments(&prefix)?
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&stale)?);
            } else {
                print_stale(&stale, dry_run);
            }
        }
    }
    Ok(())
}

fn print_table(segments: &[SegmentInfo]) {
    println!(
        "{:<32} {:<13} {:<28} {:>10} {:>8} {:<5} {:<9} {:>8}",
        "NAME", "KIND", "TYPE", "BYTES", "CREATOR", "ALIVE", "PERSISTED", "AGE"
    );
    for s in segments {
        println!(
            "{:<32} {:<13} {:<28} {:>10} {:>8} {:<5} {:<9} {:>8}",
            s.name,
            kind(s),
            s.type_name.as_deref().unwrap_or("-"),
            s.len,
            s.creator_pid
                .map_or_else(|| "-".to_owned(), |p| p.to_string()),
            yes_no(s.creator_alive),
            if s.persisted { "yes" } else { "no" },
            age(s.age_secs),
        );
    }
}

fn print_info(s: &SegmentInfo) {
    println!("name:        {}", s.name);
    println!("kind:        {}", kind(s));
    println!("type:        {}", s.type_name.as_deref().unwrap_or("-"));
    println!("bytes:       {}", s.len);
    if let Some(payload) = s.payload_len {
        println!("payload:     {payload}");
    }
    match s.creator_pid {
        Some(pid) => println!(
            "creator:     pid {pid} ({})",
            if s.creator_alive == Some(true) {
                "running"
            } else {
                "gone"
            }
        ),
        None => println!("creator:     -"),
    }
    println!("persisted:   {}", if s.persisted { "yes" } else { "no" });
    println!("owner uid:   {}", s.uid);
    println!("age:         {}", age(s.age_secs));
    if let Some(state) = &s.state {
        print_state(state);
    }
}

fn print_state(state: &ObjectState) {
    match state {
        ObjectState::Lock(lock) => print_lock("lock", lock),
        ObjectState::RwLock {
            readers,
            dead_readers,
            gate_closed,
            readers_waiting,
            writer,
        } => {
            let held = match (writer.owner_tid, readers) {
                (Some(_), 0) if *gate_closed => "write-locked".to_owned(),
                (Some(_), n) if *gate_closed => format!("writer waits for {n} readers"),
                (_, 0) => "unlocked".to_owned(),
                (_, n) => format!("read-locked by {n}"),
            };
            println!("rwlock:      {held}");
            if *dead_readers > 0 {
                println!("dead readers: {dead_readers} (gone: the next writer frees their holds)");
            }
            println!(
                "waiting:     readers {}, gate {}",
                yes_no(Some(*readers_waiting)),
                if *gate_closed { "closed" } else { "open" }
            );
            print_lock("writer lock", writer);
        }
        ObjectState::Semaphore { value } => println!("value:       {value}"),
        ObjectState::Event { set } => println!("set:         {}", yes_no(Some(*set))),
        ObjectState::Barrier {
            parties,
            waiting,
            broken,
        } => {
            println!("parties:     {parties}");
            println!("waiting:     {waiting}");
            println!("broken:      {}", yes_no(Some(*broken)));
        }
        ObjectState::Queue {
            len,
            capacity,
            closed,
        } => {
            println!("length:      {len}");
            println!("capacity:    {capacity}");
            println!("closed:      {}", yes_no(Some(*closed)));
        }
        ObjectState::JoinableQueue { unfinished_tasks } => {
            println!("unfinished:  {unfinished_tasks}");
        }
        ObjectState::Heap { lock, stats } => {
            print_lock("heap lock", lock);
            match stats {
                Some(st) => {
                    println!(
                        "heap bytes:  {} used, {} free of {}",
                        st.used, st.free, st.capacity
                    );
                    println!("largest:     {} bytes in one allocation", st.largest_free);
                    println!("objects:     {}", st.objects);
                }
                None => println!("heap stats:  - (its lock stayed held)"),
            }
        }
        other => println!("state:       {other:?}"),
    }
}

fn print_lock(what: &str, lock: &LockState) {
    let owner = match (lock.owner_tid, lock.owner_alive) {
        (Some(tid), Some(true)) => match lock.owner_pid {
            Some(pid) => format!("held by tid {tid} of pid {pid} (running)"),
            None => format!("held by tid {tid} (running)"),
        },
        (Some(tid), _) => format!("held by tid {tid} (gone: the next locker gets OwnerDied)"),
        (None, _) => "unlocked".to_owned(),
    };
    println!("{:<13}{owner}", format!("{what}:"));
    println!("consistency: {}", lock.consistency);
    if lock.waiters {
        println!("waiters:     yes");
    }
}

fn print_stale(stale: &[StaleSegment], dry_run: bool) {
    let verb = if dry_run { "would remove" } else { "removed" };
    for s in stale {
        let what = if s.unfinished { ", unfinished" } else { "" };
        println!(
            "{verb} {} (creator pid {} is gone{what})",
            s.name, s.creator_pid
        );
    }
    if stale.is_empty() {
        println!("no stale segments");
    }
}

fn kind(s: &SegmentInfo) -> &str {
    match (&s.kind, s.unfinished) {
        (Some(kind), _) => kind,
        (None, true) => "(unfinished)",
        (None, false) => "(raw)",
    }
}

fn yes_no(flag: Option<bool>) -> &'static str {
    match flag {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    }
}

fn age(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}
