//! Functions (FUNCTION LOAD and FCALL, issue 18 step 5) as replicated data: the libraries a
//! cluster holds, the commands that change them, and their encodings. Sans-IO and without Lua:
//! a library arrives here already described (its name, code and functions, found by running
//! its code once where FUNCTION LOAD was sent, `script::describe`), so applying a change is
//! deterministic on every node; the metadata group's log carries the changes
//! (`FN_TAG`) and its snapshot the whole set (`Libraries::encode`).
//!
//! Each shard thread loads the published set into its own Lua state when the set's generation
//! moves (`Registry`), and FCALL runs a function from there.

use shardline_transport::wire::{self, Reader, WireError};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The first byte of a metadata-group entry that changes the functions (after the
/// sequencer's `SEQ_TAG` and the snapshot's `STATE_TAG`).
pub const FN_TAG: u8 = 0xC8;

/// The encoding's version (the first byte of a command or a state).
const VERSION: u8 = 1;

/// The flags a function (or a script's shebang) may carry, in the order Redis lists them.
pub const FLAG_NAMES: [&str; 5] = [
    "no-writes",
    "allow-oom",
    "allow-stale",
    "no-cluster",
    "allow-cross-slot-keys",
];

/// `no-writes`: the function may not write (and FCALL_RO may run it).
pub const NO_WRITES: u8 = 1;

/// The bit of flag `name` (`FLAG_NAMES`).
pub fn flag_bit(name: &str) -> Option<u8> {
    FLAG_NAMES.iter().position(|&n| n == name).map(|i| 1 << i)
}

/// A function of a library, as FUNCTION LIST shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionInfo {
    pub name: String,
    pub description: Option<String>,
    /// Bits of `FLAG_NAMES`.
    pub flags: u8,
}

/// A library: its name, its code (shebang included) and its functions, by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Library {
    pub name: String,
    pub code: Vec<u8>,
    pub functions: Vec<FunctionInfo>,
}

/// What FUNCTION RESTORE does with the libraries already there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Refuse if any restored library exists (the default).
    Append,
    /// Restored libraries replace those of the same name.
    Replace,
    /// Drop every library first.
    Flush,
}

/// A change to the libraries, as the metadata group's log carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FnCmd {
    Load { replace: bool, lib: Library },
    Delete { name: String },
    Flush,
    Restore { policy: Policy, libs: Vec<Library> },
}

/// What a change answers when it applies (`Err`: it changed nothing; the text is the reply).
#[derive(Debug, PartialEq, Eq)]
pub enum FnApplied {
    /// FUNCTION LOAD: the library's name.
    Loaded(String),
    Done,
}

/// The libraries of a cluster, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Libraries {
    libs: BTreeMap<String, Library>,
}

impl Libraries {
    pub fn iter(&self) -> impl Iterator<Item = &Library> {
        self.libs.values()
    }

    pub fn len(&self) -> usize {
        self.libs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.libs.is_empty()
    }

    pub fn functions_count(&self) -> usize {
        self.libs.values().map(|l| l.functions.len()).sum()
    }

    /// The library that holds function `name`, and the function.
    pub fn function(&self, name: &str) -> Option<(&Library, &FunctionInfo)> {
        self.libs
            .values()
            .find_map(|l| Some((l, l.functions.iter().find(|f| f.name == name)?)))
    }

    /// Applies `cmd`, all or nothing, with Redis's errors (every node refuses it alike).
    pub fn apply(&mut self, cmd: &FnCmd) -> Result<FnApplied, String> {
        match cmd {
            FnCmd::Load { replace, lib } => {
                if self.libs.contains_key(&lib.name) && !replace {
                    return Err(format!("ERR Library '{}' already exists", lib.name));
                }
                self.check_functions(lib, &lib.name)?;
                self.libs.insert(lib.name.clone(), lib.clone());
                Ok(FnApplied::Loaded(lib.name.clone()))
            }
            FnCmd::Delete { name } => match self.libs.remove(name) {
                Some(_) => Ok(FnApplied::Done),
                None => Err("ERR Library not found".to_string()),
            },
            FnCmd::Flush => {
                self.libs.clear();
                Ok(FnApplied::Done)
            }
            FnCmd::Restore { policy, libs } => {
                let mut next = match policy {
                    Policy::Flush => Libraries::default(),
                    _ => self.clone(),
                };
                for lib in libs {
                    if next.libs.contains_key(&lib.name) {
                        if *policy != Policy::Replace {
                            return Err(format!("ERR Library {} already exists", lib.name));
                        }
                        next.libs.remove(&lib.name);
                    }
                    next.check_functions(lib, &lib.name)?;
                    next.libs.insert(lib.name.clone(), lib.clone());
                }
                *self = next;
                Ok(FnApplied::Done)
            }
        }
    }

    /// A function of `lib` that another library than `replacing` already names.
    fn check_functions(&self, lib: &Library, replacing: &str) -> Result<(), String> {
        for f in &lib.functions {
            if let Some((other, _)) = self.function(&f.name)
                && other.name != replacing
            {
                return Err(format!("ERR Function {} already exists", f.name));
            }
        }
        Ok(())
    }

    /// The state, as the metadata group's snapshot holds it.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(VERSION);
        wire::put_varint(out, self.libs.len() as u64);
        for lib in self.libs.values() {
            put_library(out, lib);
        }
    }

    pub fn decode(b: &[u8]) -> Result<Libraries, WireError> {
        let mut r = Reader::new(b);
        version(&mut r)?;
        let n = r.varint()?;
        let n = r.count(n, 3)?;
        let mut libs = BTreeMap::new();
        for _ in 0..n {
            let lib = library(&mut r)?;
            libs.insert(lib.name.clone(), lib);
        }
        r.finish()?;
        Ok(Libraries { libs })
    }
}

fn version(r: &mut Reader) -> Result<(), WireError> {
    if r.u8()? != VERSION {
        return Err(r.error(wire::WireErrorKind::Flag(0)));
    }
    Ok(())
}

fn put_library(out: &mut Vec<u8>, lib: &Library) {
    wire::put_bytes_varint(out, lib.name.as_bytes());
    wire::put_bytes_varint(out, &lib.code);
    wire::put_varint(out, lib.functions.len() as u64);
    for f in &lib.functions {
        wire::put_bytes_varint(out, f.name.as_bytes());
        match &f.description {
            None => out.push(0),
            Some(d) => {
                out.push(1);
                wire::put_bytes_varint(out, d.as_bytes());
            }
        }
        out.push(f.flags);
    }
}

fn text(r: &mut Reader) -> Result<String, WireError> {
    let b = r.bytes_varint()?;
    String::from_utf8(b.to_vec()).map_err(|_| r.error(wire::WireErrorKind::Flag(0)))
}

fn library(r: &mut Reader) -> Result<Library, WireError> {
    let name = text(r)?;
    let code = r.bytes_varint()?.to_vec();
    let n = r.varint()?;
    let n = r.count(n, 3)?;
    let mut functions = Vec::with_capacity(n);
    for _ in 0..n {
        let name = text(r)?;
        let description = if r.flag()? { Some(text(r)?) } else { None };
        functions.push(FunctionInfo {
            name,
            description,
            flags: r.u8()?,
        });
    }
    Ok(Library {
        name,
        code,
        functions,
    })
}

impl FnCmd {
    /// The command's entry in the metadata group's log (`FN_TAG` first).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(FN_TAG);
        out.push(VERSION);
        match self {
            FnCmd::Load { replace, lib } => {
                out.push(1);
                out.push(*replace as u8);
                put_library(out, lib);
            }
            FnCmd::Delete { name } => {
                out.push(2);
                wire::put_bytes_varint(out, name.as_bytes());
            }
            FnCmd::Flush => out.push(3),
            FnCmd::Restore { policy, libs } => {
                out.push(4);
                out.push(match policy {
                    Policy::Append => 0,
                    Policy::Replace => 1,
                    Policy::Flush => 2,
                });
                wire::put_varint(out, libs.len() as u64);
                for lib in libs {
                    put_library(out, lib);
                }
            }
        }
    }

    /// Decodes an entry's bytes after `FN_TAG`.
    pub fn decode(b: &[u8]) -> Result<FnCmd, WireError> {
        let mut r = Reader::new(b);
        version(&mut r)?;
        let cmd = match r.u8()? {
            1 => FnCmd::Load {
                replace: r.flag()?,
                lib: library(&mut r)?,
            },
            2 => FnCmd::Delete {
                name: text(&mut r)?,
            },
            3 => FnCmd::Flush,
            4 => {
                let policy = match r.u8()? {
                    0 => Policy::Append,
                    1 => Policy::Replace,
                    2 => Policy::Flush,
                    b => return Err(r.error(wire::WireErrorKind::Flag(b))),
                };
                let n = r.varint()?;
                let n = r.count(n, 3)?;
                let mut libs = Vec::with_capacity(n);
                for _ in 0..n {
                    libs.push(library(&mut r)?);
                }
                FnCmd::Restore { policy, libs }
            }
            b => return Err(r.error(wire::WireErrorKind::Flag(b))),
        };
        r.finish()?;
        Ok(cmd)
    }
}

/// The node's published libraries, shared by its shard threads: the metadata group's applied
/// set, swapped whole on every change; a thread reloads its Lua state's functions when the
/// generation it loaded is not the current one (one atomic load per FCALL).
#[derive(Default)]
pub struct Registry {
    current: Mutex<Arc<Libraries>>,
    generation: AtomicU64,
}

impl Registry {
    pub fn get(&self) -> Arc<Libraries> {
        self.current.lock().expect("functions").clone()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Publishes `libs` as the node's set.
    pub fn publish(&self, libs: Libraries) {
        *self.current.lock().expect("functions") = Arc::new(libs);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Applies `cmd` to the published set directly: where there is no metadata group (the
    /// command layer's tests).
    pub fn apply_local(&self, cmd: &FnCmd) -> Result<FnApplied, String> {
        let mut libs = (*self.get()).clone();
        let applied = libs.apply(cmd)?;
        self.publish(libs);
        Ok(applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lib(name: &str, fns: &[&str]) -> Library {
        Library {
            name: name.to_string(),
            code: format!("#!lua name={name}\n").into_bytes(),
            functions: fns
                .iter()
                .map(|f| FunctionInfo {
                    name: f.to_string(),
                    description: (*f == "described").then(|| "it".to_string()),
                    flags: NO_WRITES,
                })
                .collect(),
        }
    }

    fn load(libs: &mut Libraries, l: Library, replace: bool) -> Result<FnApplied, String> {
        libs.apply(&FnCmd::Load { replace, lib: l })
    }

    #[test]
    fn loading_a_library_twice_needs_replace_and_names_stay_unique() {
        let mut libs = Libraries::default();
        assert_eq!(
            load(&mut libs, lib("a", &["f1", "f2"]), false),
            Ok(FnApplied::Loaded("a".into()))
        );
        assert_eq!(
            load(&mut libs, lib("a", &["f3"]), false),
            Err("ERR Library 'a' already exists".into())
        );
        assert_eq!(
            load(&mut libs, lib("b", &["f2"]), false),
            Err("ERR Function f2 already exists".into())
        );
        // Replacing a library may keep its own function names.
        assert!(load(&mut libs, lib("a", &["f2", "f3"]), true).is_ok());
        assert!(libs.function("f1").is_none());
        assert_eq!(libs.function("f3").map(|(l, _)| l.name.as_str()), Some("a"));
        assert_eq!(libs.functions_count(), 2);
        assert_eq!(
            libs.apply(&FnCmd::Delete { name: "zz".into() }),
            Err("ERR Library not found".into())
        );
        assert_eq!(
            libs.apply(&FnCmd::Delete { name: "a".into() }),
            Ok(FnApplied::Done)
        );
        assert!(libs.is_empty());
    }

    #[test]
    fn restore_policies_are_all_or_nothing() {
        let mut libs = Libraries::default();
        load(&mut libs, lib("a", &["f1"]), false).unwrap();
        let before = libs.clone();
        let restore = |policy, l: Vec<Library>| FnCmd::Restore { policy, libs: l };
        assert_eq!(
            libs.apply(&restore(
                Policy::Append,
                vec![lib("b", &["g"]), lib("a", &["f9"])]
            )),
            Err("ERR Library a already exists".into())
        );
        assert_eq!(libs, before, "a refused restore changed nothing");
        assert_eq!(
            libs.apply(&restore(Policy::Replace, vec![lib("b", &["f1"])])),
            Err("ERR Function f1 already exists".into())
        );
        assert_eq!(libs, before);
        libs.apply(&restore(Policy::Replace, vec![lib("a", &["f9"])]))
            .unwrap();
        assert!(libs.function("f9").is_some() && libs.function("f1").is_none());
        libs.apply(&restore(Policy::Flush, vec![lib("c", &["h"])]))
            .unwrap();
        assert_eq!(
            libs.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
            ["c"]
        );
    }

    #[test]
    fn commands_and_state_round_trip_and_garbage_is_refused() {
        let cmds = [
            FnCmd::Load {
                replace: true,
                lib: lib("a", &["f1", "described"]),
            },
            FnCmd::Delete { name: "a".into() },
            FnCmd::Flush,
            FnCmd::Restore {
                policy: Policy::Replace,
                libs: vec![lib("a", &["x"]), lib("b", &[])],
            },
        ];
        for cmd in cmds {
            let mut b = Vec::new();
            cmd.encode(&mut b);
            assert_eq!(b[0], FN_TAG);
            assert_eq!(FnCmd::decode(&b[1..]), Ok(cmd));
            for cut in 1..b.len() {
                assert!(FnCmd::decode(&b[1..cut]).is_err(), "a cut at {cut} decoded");
            }
        }
        let mut libs = Libraries::default();
        load(&mut libs, lib("a", &["f1", "described"]), false).unwrap();
        load(&mut libs, lib("b", &["g"]), false).unwrap();
        let mut b = Vec::new();
        libs.encode(&mut b);
        assert_eq!(Libraries::decode(&b), Ok(libs));
        assert!(Libraries::decode(&b[..b.len() - 1]).is_err());
        assert!(Libraries::decode(&[2, 0]).is_err(), "another version");
    }
}
