//! Every type error and unknown key of a merged config, not only the first: serde stops at
//! the first one, so a file with five mistakes would take five rounds of edit and check.
//! Each round records the error, removes the value at its path (its default takes over,
//! or the missing-field error moves to the parent) and deserializes again.

use super::{load::Source, validate::Problem, Config};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// More rounds than any real file needs; bounds the work on a pathological one.
const MAX_ROUNDS: usize = 50;

/// Where a key's value came from: (file, line) or the source that set it.
pub(super) type Locate<'a> = dyn Fn(&str) -> (Option<PathBuf>, Option<usize>, Option<Source>) + 'a;

enum Step {
    Key(String),
    Index(usize),
}

/// The config, or every type problem found, each with its key as the file spells it.
pub(super) fn deserialize_all(tree: Value, locate: &Locate<'_>) -> (Option<Config>, Vec<Problem>) {
    let (config, mut problems) = rounds(tree, locate);
    // In the order of the file, as the owner reads it (serde's is the struct's); values
    // from the environment after.
    problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
    (config, problems)
}

fn rounds(mut tree: Value, locate: &Locate<'_>) -> (Option<Config>, Vec<Problem>) {
    let mut problems = Vec::new();
    // Array elements removed so far, by their array's key as written: the keys of later
    // problems still count the elements as the file lists them.
    let mut removed: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for _ in 0..MAX_ROUNDS {
        let e = match serde_path_to_error::deserialize::<_, Config>(tree.clone()) {
            Ok(config) if problems.is_empty() => return (Some(config), problems),
            Ok(_) => return (None, problems),
            Err(e) => e,
        };
        let mut steps = Vec::new();
        let mut walkable = true;
        for segment in e.path() {
            match segment {
                serde_path_to_error::Segment::Map { key } => steps.push(Step::Key(key.clone())),
                serde_path_to_error::Segment::Seq { index } => steps.push(Step::Index(*index)),
                _ => walkable = false,
            }
        }
        let key = written_key(&steps, &removed);
        // A missing field where a wrong value was just removed follows from the removal:
        // the problem is already reported, at the value itself.
        let follows = problems.iter().any(|p: &Problem| {
            p.key
                .strip_prefix(key.as_str())
                .is_some_and(|rest| rest.starts_with(['.', '[']))
        });
        if !follows {
            let (file, line, source) = locate(&key);
            let mut p = Problem::new(&key, e.into_inner().to_string());
            (p.file, p.line, p.source) = (file, line, source);
            problems.push(p);
        }
        if !walkable || !remove(&mut tree, &steps, &mut removed) {
            break;
        }
    }
    (None, problems)
}

/// The dotted key of `steps` with each index as the file counts it.
fn written_key(steps: &[Step], removed: &BTreeMap<String, Vec<usize>>) -> String {
    let mut key = String::new();
    for step in steps {
        match step {
            Step::Key(k) if key.is_empty() => key.push_str(k),
            Step::Key(k) => {
                key.push('.');
                key.push_str(k);
            }
            Step::Index(i) => {
                let written = original_index(*i, removed.get(&key).map_or(&[][..], Vec::as_slice));
                key.push_str(&format!("[{written}]"));
            }
        }
    }
    key
}

/// Index `i` of what is left of a list, as an index of the list before `removed` went.
fn original_index(i: usize, removed: &[usize]) -> usize {
    let mut sorted = removed.to_vec();
    sorted.sort_unstable();
    let mut index = i;
    for r in sorted {
        if r <= index {
            index += 1;
        }
    }
    index
}

/// Remove the value at `steps`; false when there is nothing there to remove.
fn remove(tree: &mut Value, steps: &[Step], removed: &mut BTreeMap<String, Vec<usize>>) -> bool {
    let Some((last, parents)) = steps.split_last() else {
        return false;
    };
    let mut cur = tree;
    for step in parents {
        let next = match (step, cur) {
            (Step::Key(k), Value::Object(m)) => m.get_mut(k),
            (Step::Index(i), Value::Array(a)) => a.get_mut(*i),
            _ => None,
        };
        match next {
            Some(v) => cur = v,
            None => return false,
        }
    }
    match (last, cur) {
        (Step::Key(k), Value::Object(m)) => m.remove(k).is_some(),
        (Step::Index(i), Value::Array(a)) if *i < a.len() => {
            let list = written_key(parents, removed);
            let original = original_index(*i, removed.get(&list).map_or(&[][..], Vec::as_slice));
            removed.entry(list).or_default().push(original);
            a.remove(*i);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_counts_the_elements_removed_before_it() {
        assert_eq!(original_index(0, &[]), 0);
        assert_eq!(original_index(0, &[0]), 1);
        assert_eq!(original_index(1, &[0, 2]), 3);
        assert_eq!(original_index(1, &[3]), 1);
    }

    #[test]
    fn a_bad_list_element_is_reported_and_later_ones_keep_their_index() {
        let tree: Value = toml::from_str(
            "[[services]]\nname = 1\nkind = \"process\"\n\
             [[services]]\nname = \"ok\"\nkind = \"process\"\n\
             [[services]]\nname = \"x\"\nkind = \"nonsense\"\n",
        )
        .unwrap();
        let (config, problems) = deserialize_all(tree, &|_| (None, None, None));
        assert!(config.is_none());
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            ["services[0].name", "services[2].kind"],
            "{problems:#?}"
        );
    }
}
