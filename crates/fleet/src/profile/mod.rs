//! Fleet profiles: load a TOML file, validate it, and keep the resolved [`Profile`].
//!
//! [`load`] reads and validates a file; [`parse`] does the same for text already in memory.
//! Every problem — TOML syntax, an unknown key, a wrong type or a semantic error such as a
//! probability above 1 — becomes a [`ProfileError`] whose message starts `file:line:col:`.
//! Expanding a profile into devices is [`crate::plan`]'s job, not this module's.
//! The format is documented in `fleet-profiles/README.md`.

mod spec;
pub mod tags;

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::Spanned;

use self::spec::{GroupSpec, ProfileSpec};
use self::tags::TagSpec;
use crate::behaviour::method::MethodBehaviour;
use crate::behaviour::Behaviour;
use crate::template::{PayloadTemplate, Template};

/// Connect rate used when the profile does not set `fleet.connect_rate` (devices per second).
pub const DEFAULT_CONNECT_RATE: f64 = 200.0;

/// Upper bound on the devices of one profile.
pub const MAX_DEVICES: u64 = 10_000_000;

/// Variables every device-level template may use besides the group's tag names.
pub const DEVICE_VARIABLES: &[&str] = &["deviceId", "n", "i", "group"];

/// Extra variables payload templates may use: `method` and `payload` (the request) in method
/// answers, `seq` in telemetry, `now` (RFC 3339) everywhere. Unset ones render as `null`.
pub const PAYLOAD_VARIABLES: &[&str] = &["method", "payload", "seq", "now"];

/// A validated profile.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The file it came from (as given to [`load`], or the name given to [`parse`]).
    pub file: PathBuf,
    /// `fleet.name`, or the file stem.
    pub name: String,
    /// Devices connected per second during ramp-up.
    pub connect_rate: f64,
    /// The device groups, in file order.
    pub groups: Vec<Group>,
}

/// One validated `[[group]]`.
#[derive(Debug, Clone)]
pub struct Group {
    /// The group name (unique within the profile).
    pub name: String,
    /// How many devices the group has.
    pub count: u64,
    /// Global index of the group's first device.
    pub first_index: u64,
    /// The device id template.
    pub id: Template,
    /// Tags by name (sorted, which fixes the order of random draws).
    pub tags: Vec<(String, TagSpec)>,
    /// Initial reported properties, sent by each device after it connects.
    pub reported: Option<PayloadTemplate>,
    /// What the group's devices do.
    pub behaviour: Arc<Behaviour>,
}

/// Why a profile cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The file cannot be read.
    #[error("{file}: cannot read profile: {source}")]
    Read {
        /// The path.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid profile.
    #[error("{file}:{line}:{column}: {message}")]
    Invalid {
        /// The path.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
}

/// A semantic error at a byte span of the source (internal to validation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Byte range in the source text.
    pub span: Range<usize>,
    /// What is wrong.
    pub message: String,
}

/// Reads and validates the profile at `path`.
///
/// # Errors
/// [`ProfileError::Read`] when the file cannot be read, [`ProfileError::Invalid`] with
/// `file:line:col` for anything wrong inside it.
pub fn load(path: &Path) -> Result<Profile, ProfileError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ProfileError::Read { file: path.display().to_string(), source })?;
    parse(&text, path)
}

/// Validates profile `text`; `file` is only used in messages and for the default name.
///
/// # Errors
/// [`ProfileError::Invalid`] with `file:line:col` for the first problem found.
pub fn parse(text: &str, file: &Path) -> Result<Profile, ProfileError> {
    let at = |span: Range<usize>, message: String| {
        let (line, column) = line_col(text, span.start);
        ProfileError::Invalid { file: file.display().to_string(), line, column, message }
    };
    let spec: ProfileSpec = toml::from_str(text)
        .map_err(|err| at(err.span().unwrap_or(0..0), err.message().to_owned()))?;
    resolve(spec, file).map_err(|invalid| at(invalid.span, invalid.message))
}

/// Checks that `value` is a probability.
///
/// # Errors
/// A lowercase sentence naming `name`.
pub fn check_probability(name: &str, value: f64) -> Result<f64, String> {
    if !(0.0..=1.0).contains(&value) {
        return Err(format!("{name} must be a probability between 0 and 1, got {value}"));
    }
    Ok(value)
}

impl Profile {
    /// Total number of devices over all groups.
    pub fn device_count(&self) -> u64 {
        self.groups.iter().map(|g| g.count).sum()
    }
}

fn resolve(spec: ProfileSpec, file: &Path) -> Result<Profile, Invalid> {
    let connect_rate = match &spec.fleet.connect_rate {
        Some(rate) if !(rate.get_ref().is_finite() && *rate.get_ref() > 0.0) => {
            return Err(invalid(
                rate.span(),
                format!("connect_rate must be > 0 devices per second, got {}", rate.get_ref()),
            ));
        }
        Some(rate) => *rate.get_ref(),
        None => DEFAULT_CONNECT_RATE,
    };
    if spec.groups.is_empty() {
        return Err(invalid(0..0, "the profile has no [[group]]".to_owned()));
    }
    let mut names = HashSet::new();
    let mut groups = Vec::with_capacity(spec.groups.len());
    let mut next_index = 0u64;
    for group in &spec.groups {
        let name = &group.get_ref().name;
        if !names.insert(name.get_ref().clone()) {
            return Err(invalid(name.span(), format!("duplicate group name {:?}", name.get_ref())));
        }
        let resolved = resolve_group(group.get_ref(), next_index)?;
        next_index += resolved.count;
        if next_index > MAX_DEVICES {
            return Err(invalid(
                group.get_ref().count.span(),
                format!("the profile has more than {MAX_DEVICES} devices"),
            ));
        }
        groups.push(resolved);
    }
    let name = spec.fleet.name.clone().unwrap_or_else(|| {
        file.file_stem().map_or_else(|| "fleet".to_owned(), |s| s.to_string_lossy().into_owned())
    });
    Ok(Profile { file: file.to_path_buf(), name, connect_rate, groups })
}

fn resolve_group(group: &GroupSpec, first_index: u64) -> Result<Group, Invalid> {
    let count = *group.count.get_ref();
    if count < 1 {
        return Err(invalid(group.count.span(), format!("count must be at least 1, got {count}")));
    }
    let count = count as u64;
    let tags = group
        .tags
        .iter()
        .map(|(name, value)| {
            Ok((
                name.clone(),
                TagSpec::from_toml(value.get_ref())
                    .map_err(|m| at(value, format!("tag {name}: {m}")))?,
            ))
        })
        .collect::<Result<Vec<_>, Invalid>>()?;
    let tag_names: Vec<&str> = tags.iter().map(|(n, _)| n.as_str()).collect();
    let id = resolve_id_template(&group.id, &tag_names, count)?;
    let mut known: Vec<&str> = tag_names.clone();
    known.extend_from_slice(DEVICE_VARIABLES);
    known.extend_from_slice(PAYLOAD_VARIABLES);
    let reported = match &group.reported {
        Some(table) => {
            let template = PayloadTemplate::from_toml(&toml::Value::Table(table.get_ref().clone()))
                .and_then(|t| t.check_variables(&known).map(|()| t))
                .map_err(|e| at(table, format!("reported: {e}")))?;
            Some(template)
        }
        None => None,
    };
    let behaviour = resolve_behaviour(group, &known)?;
    Ok(Group {
        name: group.name.get_ref().clone(),
        count,
        first_index,
        id,
        tags,
        reported,
        behaviour: Arc::new(behaviour),
    })
}

fn resolve_id_template(
    id: &Spanned<String>,
    tag_names: &[&str],
    count: u64,
) -> Result<Template, Invalid> {
    let template = Template::parse(id.get_ref()).map_err(|e| at(id, format!("id: {e}")))?;
    let mut known = tag_names.to_vec();
    known.extend_from_slice(&["n", "i", "group"]);
    template.check_variables(&known).map_err(|e| at(id, format!("id: {e}")))?;
    if template.is_random() {
        return Err(at(id, "id: device ids cannot use random functions".to_owned()));
    }
    if count > 1 && !template.variables().any(|v| v == "n" || v == "i") {
        return Err(at(
            id,
            format!(
                "id: {count} devices need {{n}} or {{i}} in the id template to get distinct ids"
            ),
        ));
    }
    Ok(template)
}

fn resolve_behaviour(group: &GroupSpec, known: &[&str]) -> Result<Behaviour, Invalid> {
    let mut methods = BTreeMap::new();
    let mut default_method = MethodBehaviour::immediate_ok();
    for (name, spec) in &group.methods {
        let behaviour =
            spec.get_ref().resolve(known).map_err(|m| at(spec, format!("methods.{name}: {m}")))?;
        if name == "default" {
            default_method = behaviour;
        } else {
            methods.insert(name.clone(), behaviour);
        }
    }
    let desired = match &group.desired {
        Some(spec) => {
            Some(spec.get_ref().resolve().map_err(|m| at(spec, format!("desired: {m}")))?)
        }
        None => None,
    };
    let connectivity = match &group.connectivity {
        Some(spec) => {
            spec.get_ref().resolve().map_err(|m| at(spec, format!("connectivity: {m}")))?
        }
        None => Default::default(),
    };
    let telemetry = match &group.telemetry {
        Some(spec) => {
            Some(spec.get_ref().resolve(known).map_err(|m| at(spec, format!("telemetry: {m}")))?)
        }
        None => None,
    };
    Ok(Behaviour { methods, default_method, desired, connectivity, telemetry })
}

fn at<T>(spanned: &Spanned<T>, message: String) -> Invalid {
    invalid(spanned.span(), message)
}

fn invalid(span: Range<usize>, message: String) -> Invalid {
    Invalid { span, message }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests;
