//! Pure path logic of ingest: which zip entry names are safe, which are junk, and how the folder
//! structure maps to a layout, classes and candidate image files. No IO here, so the rules are easy
//! to read and to unit-test; `ingest` does the reading and writing.

use std::collections::{BTreeMap, BTreeSet};

use unicode_normalization::UnicodeNormalization;

use crate::manifest::{Layout, Skipped};
use crate::IngestError;

/// Image extensions accepted (compared case-insensitively).
pub(crate) const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "bmp", "gif", "webp"];

/// A zip entry reduced to what layout detection needs.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub index: usize,
    pub name: String,
    /// Path components with `""` and `"."` removed; never contains `".."`.
    pub comps: Vec<String>,
    pub is_dir: bool,
}

/// Which side of the split a file was given by the zip (`None`: ingest splits it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Side {
    Train,
    Test,
}

#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub index: usize,
    pub name: String,
    pub class: usize,
    pub side: Option<Side>,
}

#[derive(Debug)]
pub(crate) struct Plan {
    pub layout: Layout,
    /// Canonical (NFC) names sorted by byte order; position = class index.
    pub classes: Vec<String>,
    /// Per class: the zip's spellings of its folder when there were several (see `canonical`).
    pub merged: Vec<Vec<String>>,
    pub candidates: Vec<Candidate>,
    pub skipped: Vec<Skipped>,
}

/// Split an entry name into safe components, or `None` when the name could escape the output directory
/// or be read differently by another tool: absolute paths, drive letters, backslashes (Windows
/// separators), control characters (NUL truncation tricks), `..` anywhere.
pub(crate) fn safe_components(name: &str) -> Option<Vec<String>> {
    if name.is_empty() || name.starts_with('/') || name.contains('\\') || name.chars().any(char::is_control) {
        return None;
    }
    let comps: Vec<String> = name
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_owned)
        .collect();
    if comps.iter().any(|c| c == "..") {
        return None;
    }
    if let Some(first) = comps.first() {
        let b = first.as_bytes();
        if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
            return None;
        }
    }
    Some(comps)
}

/// macOS resource forks, dotfiles and Windows thumbnail caches: never part of a dataset.
fn is_hidden(comps: &[String]) -> bool {
    comps.iter().any(|c| c.starts_with('.') || c == "__MACOSX")
        || comps.last().is_some_and(|l| {
            let l = l.to_ascii_lowercase();
            l == "thumbs.db" || l == "desktop.ini"
        })
}

fn has_image_extension(name: &str) -> bool {
    name.rsplit_once('.')
        .is_some_and(|(_, ext)| IMAGE_EXTENSIONS.iter().any(|e| ext.eq_ignore_ascii_case(e)))
}

fn is_named(comp: &str, want: &str) -> bool {
    comp.eq_ignore_ascii_case(want)
}

fn skip(skipped: &mut Vec<Skipped>, e: &Entry, reason: &str) {
    skipped.push(Skipped {
        path: e.name.clone(),
        reason: reason.to_owned(),
    });
}

/// Most wrapper folders (a single folder holding everything) looked through for the dataset:
/// `outer/inner/train/…` has two. Zips made by archiving a parent folder, or a download's folder,
/// nest one or two deep; past this bound the refusal names how deep the nesting went instead.
pub(crate) const MAX_WRAPPERS: usize = 4;

/// Canonical form of a folder name for comparing classes: NFC (composed).
///
/// `café` can be spelled with U+00E9 (NFC: Linux, Windows, most zip tools) or with `e` + U+0301
/// (NFD: names written on macOS's HFS+ and by some of its tools). A dataset assembled on two
/// machines can hold both spellings of one folder. They are the same name to every person who reads
/// them, so they are merged into one class under the NFC spelling rather than refused: a refusal
/// would ask the person to fix a difference they cannot see. The merge is not silent:
/// `ClassInfo::merged_spellings` lists the spellings found (manifest and upload response). NFKC is
/// not used: it would also merge names that look different (`ﬁ` and `fi`, `²` and `2`).
fn canonical(name: &str) -> String {
    name.nfc().collect()
}

/// Where the dataset root is, for messages: "in `outer/inner/`", or "at the zip's top level".
fn describe(prefix: &[String]) -> String {
    if prefix.is_empty() {
        "at the zip's top level".to_owned()
    } else {
        format!("in `{}/`", prefix.join("/"))
    }
}

/// Decide the layout and the class of every file. Refuses only on structure (`UnknownLayout`,
/// `ClassMismatch`, `TooFewClasses`); empty classes are found after decoding, by the caller.
pub(crate) fn plan(entries: &[Entry]) -> Result<Plan, IngestError> {
    let mut skipped = Vec::new();
    // Visible entries with their components in canonical form, which decide structure; `Entry.name`
    // (the zip's own spelling) is what messages and `skipped` show.
    let mut visible: Vec<(&Entry, Vec<String>)> = Vec::new();
    for e in entries {
        if e.comps.is_empty() {
            continue;
        }
        if is_hidden(&e.comps) {
            if !e.is_dir {
                skip(&mut skipped, e, "hidden or system file");
            }
            continue;
        }
        visible.push((e, e.comps.iter().map(|c| canonical(c)).collect()));
    }
    // Directory components of an entry: all of a directory entry, all but the last of a file.
    let dirs_of = |e: &Entry| {
        if e.is_dir {
            e.comps.len()
        } else {
            e.comps.len() - 1
        }
    };

    // Wrapper folders (e.g. `pets/`, or `outer/inner/`): descend while everything with a folder is
    // inside one single folder that is not train/test and has folders inside it. Files beside a
    // wrapper do not count against it (they are skipped below).
    let mut root: Vec<String> = Vec::new();
    loop {
        let depth = root.len();
        let inside = |(e, c): &&(&Entry, Vec<String>)| c.starts_with(&root) && dirs_of(e) > depth;
        let tops: BTreeSet<&str> = visible
            .iter()
            .filter(inside)
            .map(|(_, c)| c[depth].as_str())
            .collect();
        let wrapper = match tops.first() {
            Some(top) if tops.len() == 1 && !is_named(top, "train") && !is_named(top, "test") => {
                let deeper = visible.iter().filter(inside).any(|(e, _)| dirs_of(e) > depth + 1);
                deeper.then(|| (*top).to_owned())
            }
            _ => None,
        };
        let Some(wrapper) = wrapper else { break };
        if depth == MAX_WRAPPERS {
            root.push(wrapper);
            return Err(IngestError::UnknownLayout(format!(
                "found only single folders nested one inside the other, down to `{}/`; tanren looks \
                 through at most {MAX_WRAPPERS} such wrapper folders for `train/` and `test/` or class \
                 folders; zip the folder that holds them",
                root.join("/")
            )));
        }
        root.push(wrapper);
    }

    // Entries relative to the dataset root, with the ones outside it skipped.
    let mut rel: Vec<(&Entry, &[String])> = Vec::new();
    for (e, c) in &visible {
        if !c.starts_with(&root) {
            if !e.is_dir {
                skip(&mut skipped, e, "file outside the dataset's top-level folder");
            }
        } else if c.len() > root.len() {
            rel.push((e, &c[root.len()..]));
        }
    }
    let at = describe(&root);

    let has_train = rel
        .iter()
        .any(|(e, c)| c.len() > usize::from(!e.is_dir) && is_named(&c[0], "train"));
    let has_test = rel
        .iter()
        .any(|(e, c)| c.len() > usize::from(!e.is_dir) && is_named(&c[0], "test"));
    let layout = match (has_train, has_test) {
        (true, true) => Layout::TrainTest,
        (false, false) => Layout::ClassFolders,
        (true, false) | (false, true) => {
            let (found, missing) = if has_train {
                ("train", "test")
            } else {
                ("test", "train")
            };
            return Err(IngestError::UnknownLayout(format!(
                "found a `{found}/` folder but no `{missing}/` folder beside it ({at}); upload \
                 `train/<class>/` and `test/<class>/` folders, or only `<class>/` folders to have \
                 tanren split them 80/20"
            )));
        }
    };

    // (side, canonical class name) -> zip entries of files in that class (recursively), and the
    // spellings of each class's folder as the zip has them.
    let mut members: BTreeMap<(Option<Side>, String), Vec<&Entry>> = BTreeMap::new();
    let mut spellings: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (e, c) in rel {
        let (side, rest) = match layout {
            Layout::ClassFolders => (None, c),
            Layout::TrainTest if is_named(&c[0], "train") => (Some(Side::Train), &c[1..]),
            Layout::TrainTest if is_named(&c[0], "test") => (Some(Side::Test), &c[1..]),
            Layout::TrainTest => {
                if !e.is_dir {
                    skip(&mut skipped, e, "file outside the train/ and test/ folders");
                }
                continue;
            }
        };
        let class_dirs = if e.is_dir {
            rest.len()
        } else {
            rest.len().saturating_sub(1)
        };
        if class_dirs == 0 {
            if !e.is_dir {
                skip(&mut skipped, e, "file where a class folder was expected");
            }
            continue;
        }
        // The same component of the zip's own name: canonical form keeps the component count.
        let raw = &e.comps[e.comps.len() - rest.len()];
        spellings.entry(rest[0].clone()).or_default().insert(raw.clone());
        let list = members.entry((side, rest[0].clone())).or_default();
        if e.is_dir {
            continue;
        }
        if has_image_extension(&e.name) {
            list.push(e);
        } else {
            skip(
                &mut skipped,
                e,
                "not an image file; supported extensions: png, jpg, jpeg, bmp, gif, webp",
            );
        }
    }

    let set_of = |side| {
        members
            .keys()
            .filter(|(s, _)| *s == side)
            .map(|(_, n)| n.clone())
            .collect()
    };
    let classes: BTreeSet<String> = match layout {
        Layout::ClassFolders => set_of(None),
        Layout::TrainTest => {
            let train: BTreeSet<String> = set_of(Some(Side::Train));
            let test: BTreeSet<String> = set_of(Some(Side::Test));
            if train != test {
                return Err(IngestError::ClassMismatch {
                    only_train: train.difference(&test).cloned().collect(),
                    only_test: test.difference(&train).cloned().collect(),
                });
            }
            train
        }
    };
    if classes.len() < 2 {
        return Err(IngestError::TooFewClasses {
            found: classes.into_iter().collect(),
            at,
        });
    }
    let classes: Vec<String> = classes.into_iter().collect();
    let merged = classes
        .iter()
        .map(|c| match spellings.remove(c) {
            Some(s) if s.len() > 1 => s.into_iter().collect(),
            _ => Vec::new(),
        })
        .collect();
    let mut candidates = Vec::new();
    for ((side, class), list) in members {
        let class = classes.binary_search(&class).expect("class collected above");
        for e in list {
            candidates.push(Candidate {
                index: e.index,
                name: e.name.clone(),
                class,
                side,
            });
        }
    }
    // Sorted by name within each class so output numbering follows the zip's names.
    candidates.sort_by(|a, b| (a.side, a.class, &a.name).cmp(&(b.side, b.class, &b.name)));
    Ok(Plan {
        layout,
        classes,
        merged,
        candidates,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(names: &[&str]) -> Vec<Entry> {
        names
            .iter()
            .enumerate()
            .map(|(index, n)| Entry {
                index,
                name: n.to_string(),
                comps: safe_components(n).expect("safe"),
                is_dir: n.ends_with('/'),
            })
            .collect()
    }

    #[test]
    fn unsafe_names() {
        for bad in [
            "/etc/passwd",
            "../x.png",
            "a/../../x.png",
            "C:/x.png",
            "c:x.png",
            "a\\..\\x.png",
            "a/\0.png",
            "",
        ] {
            assert!(safe_components(bad).is_none(), "{bad:?}");
        }
        assert_eq!(
            safe_components("./a//b/c.png").expect("safe"),
            ["a", "b", "c.png"]
        );
    }

    #[test]
    fn train_test_with_wrapper_and_junk() {
        let p = plan(&entries(&[
            "pets/",
            "pets/train/dog/1.png",
            "pets/train/cat/x/2.JPG",
            "pets/test/cat/3.png",
            "pets/test/dog/4.webp",
            "pets/test/dog/notes.txt",
            "pets/train/stray.png",
            "pets/val/cat/5.png",
            "__MACOSX/pets/._1.png",
            "pets/.DS_Store",
            "README.md",
        ]))
        .expect("plan");
        assert_eq!(p.layout, Layout::TrainTest);
        assert_eq!(p.classes, ["cat", "dog"]);
        let got: Vec<_> = p
            .candidates
            .iter()
            .map(|c| (c.side, c.class, c.name.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (Some(Side::Train), 0, "pets/train/cat/x/2.JPG"),
                (Some(Side::Train), 1, "pets/train/dog/1.png"),
                (Some(Side::Test), 0, "pets/test/cat/3.png"),
                (Some(Side::Test), 1, "pets/test/dog/4.webp"),
            ]
        );
        assert_eq!(p.skipped.len(), 6);
    }

    #[test]
    fn class_folders_plain_and_wrapped() {
        for prefix in ["", "data/"] {
            let names: Vec<String> = ["b/1.png", "a/2.png", "a/3.png"]
                .iter()
                .map(|n| format!("{prefix}{n}"))
                .collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let p = plan(&entries(&refs)).expect("plan");
            assert_eq!(
                (p.layout, p.classes.clone()),
                (Layout::ClassFolders, vec!["a".into(), "b".into()])
            );
            assert!(p.candidates.iter().all(|c| c.side.is_none()));
        }
    }

    #[test]
    fn structural_refusals() {
        let err = |n: &[&str]| plan(&entries(n)).expect_err("refused").code();
        assert_eq!(err(&["train/a/1.png", "train/b/1.png"]), "unknown_layout");
        assert_eq!(err(&["train/a/1.png", "test/b/1.png"]), "class_mismatch");
        assert_eq!(err(&["train/a/1.png", "test/a/1.png"]), "too_few_classes");
        assert_eq!(err(&["cat/1.png", "cat/2.png"]), "too_few_classes");
    }
}
