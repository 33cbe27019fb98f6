//! `[aws]` (phase 3) and `[schedule]` (phase 4): checked with the rest of
//! the file, so a bad CIDR or time zone fails before any AWS call.

use super::{ConfigError, EnvSource, Origin};
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAws {
    region: Option<Spanned<String>>,
    endpoint: Option<Spanned<String>>,
    vpc_cidr: Option<Spanned<String>>,
    subnet_cidrs: Option<Spanned<Vec<Spanned<String>>>>,
    availability_zones: Option<Spanned<Vec<Spanned<String>>>>,
    admin_cidr: Option<Spanned<String>>,
    ssh_public_key: Option<Spanned<String>>,
    ami: Option<Spanned<String>>,
    ami_owner: Option<Spanned<String>>,
    ami_name: Option<Spanned<String>>,
    control_plane_type: Option<Spanned<String>>,
    worker_type: Option<Spanned<String>>,
    root_volume_gib: Option<Spanned<i64>>,
    min_size: Option<Spanned<i64>>,
    desired_capacity: Option<Spanned<i64>>,
    max_size: Option<Spanned<i64>>,
    cpu_target_percent: Option<Spanned<i64>>,
    node_port: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileSchedule {
    stop_at: Option<Spanned<String>>,
    start_at: Option<Spanned<String>>,
    time_zone: Option<Spanned<String>>,
}

/// An IPv4 network, e.g. 10.42.0.0/16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: u32,
    pub len: u8,
}

impl Cidr {
    fn mask(self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - self.len)
        }
    }
    pub fn contains(self, other: Cidr) -> bool {
        other.len >= self.len && other.addr & self.mask() == self.addr
    }
    pub fn overlaps(self, other: Cidr) -> bool {
        self.contains(other) || other.contains(self)
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an IPv4 CIDR like 10.42.0.0/16");
        let (ip, len) = s.split_once('/').ok_or_else(bad)?;
        let ip: std::net::Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let len: u8 = len.parse().ok().filter(|l| *l <= 32).ok_or_else(bad)?;
        let c = Cidr {
            addr: u32::from(ip),
            len,
        };
        if c.addr & c.mask() != c.addr {
            let net = std::net::Ipv4Addr::from(c.addr & c.mask());
            return Err(format!(
                "{s:?} has host bits set; the network is {net}/{len}"
            ));
        }
        Ok(c)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", std::net::Ipv4Addr::from(self.addr), self.len)
    }
}

/// Phase 3's settings.
#[derive(Debug, Clone)]
pub struct Aws {
    pub region: String,
    /// An emulator (moto, LocalStack) instead of AWS; None = the real one.
    pub endpoint: Option<String>,
    pub vpc_cidr: Cidr,
    pub subnet_cidrs: Vec<Cidr>,
    /// Empty: the region's first zones, one per subnet, looked up.
    pub availability_zones: Vec<String>,
    /// Where SSH and the Kubernetes API may be reached from; None = nowhere.
    pub admin_cidr: Option<Cidr>,
    pub ssh_public_key: std::path::PathBuf,
    /// Pinned AMI; None = the newest image matching ami_owner + ami_name.
    pub ami: Option<String>,
    pub ami_owner: String,
    pub ami_name: String,
    pub control_plane_type: String,
    pub worker_type: String,
    pub root_volume_gib: i32,
    pub min_size: i32,
    pub desired_capacity: i32,
    pub max_size: i32,
    pub cpu_target_percent: f64,
    /// The NodePort the load balancer forwards to (phase 5 exposes pricing there).
    pub node_port: i32,
}

/// Phase 4's settings.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// (hour, minute) in `time_zone`.
    pub stop_at: (u8, u8),
    pub start_at: Option<(u8, u8)>,
    /// IANA name, checked against the bundled time zone database.
    pub time_zone: String,
}

/// Canonical's account: the documented owner of official Ubuntu images.
pub const UBUNTU_OWNER: &str = "099720109477";
/// The latest Ubuntu LTS (24.04) server images for x86_64.
pub const UBUNTU_NAME: &str = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*";

/// Regions this build knows; an unknown one is a typo, not a new region
/// to discover by failing half-way.
pub const REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
];

fn strings(
    o: &Origin,
    key: &str,
    v: &Option<Spanned<String>>,
    default: &str,
    check: impl Fn(&str) -> Result<(), String>,
) -> Result<String, ConfigError> {
    match v {
        Some(s) => match check(s.get_ref()) {
            Ok(()) => Ok(s.get_ref().clone()),
            Err(m) => o.err(s.span(), key, m),
        },
        None => Ok(default.to_owned()),
    }
}

fn int(
    o: &Origin,
    key: &str,
    v: &Option<Spanned<i64>>,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, ConfigError> {
    match v {
        Some(n) if range.contains(n.get_ref()) => Ok(*n.get_ref()),
        Some(n) => o.err(
            n.span(),
            key,
            format!("must be between {} and {}", range.start(), range.end()),
        ),
        None => Ok(default),
    }
}

fn instance_type(s: &str) -> Result<(), String> {
    let ok = s.split_once('.').is_some_and(|(f, z)| {
        !f.is_empty()
            && !z.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    });
    ok.then_some(())
        .ok_or_else(|| "must be an EC2 instance type like t3.medium".into())
}

fn hh_mm(s: &str) -> Result<(u8, u8), String> {
    let bad = || format!("{s:?} is not a time of day like 18:00");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let h: u8 = h.parse().ok().filter(|h| *h < 24).ok_or_else(bad)?;
    let m: u8 = m.parse().ok().filter(|m| *m < 60).ok_or_else(bad)?;
    Ok((h, m))
}

pub(super) fn aws(o: &Origin, f: &FileAws, env: &dyn EnvSource) -> Result<Aws, ConfigError> {
    let region = match env.var("ESHOP_AWS_REGION") {
        Some(r) if REGIONS.contains(&r.as_str()) => r,
        Some(r) => {
            return Err(ConfigError(format!(
                "ESHOP_AWS_REGION={r:?}: unknown region"
            )))
        }
        None => strings(o, "aws.region", &f.region, "eu-west-1", |r| {
            if REGIONS.contains(&r) {
                Ok(())
            } else {
                Err(format!("unknown region {r:?}; e.g. eu-west-1, us-east-1"))
            }
        })?,
    };
    let check_endpoint = |e: &str| -> Result<(), String> {
        let rest = e
            .strip_prefix("http://")
            .or_else(|| e.strip_prefix("https://"));
        match rest {
            Some(r) if !r.is_empty() && !r.contains(char::is_whitespace) => Ok(()),
            _ => Err(format!(
                "{e:?} must be a URL like http://127.0.0.1:5000 (empty = AWS itself)"
            )),
        }
    };
    let endpoint = match env.var("ESHOP_AWS_ENDPOINT") {
        Some(e) => {
            check_endpoint(&e).map_err(|m| ConfigError(format!("ESHOP_AWS_ENDPOINT: {m}")))?;
            Some(e)
        }
        None => match &f.endpoint {
            Some(e) if e.get_ref().is_empty() => None,
            Some(e) => match check_endpoint(e.get_ref()) {
                Ok(()) => Some(e.get_ref().trim_end_matches('/').to_owned()),
                Err(m) => return o.err(e.span(), "aws.endpoint", m),
            },
            None => None,
        },
    };

    let cidr = |key: &str, v: &Spanned<String>| -> Result<Cidr, ConfigError> {
        v.get_ref()
            .parse::<Cidr>()
            .or_else(|m| o.err(v.span(), key, m))
    };
    let vpc_cidr = match &f.vpc_cidr {
        Some(v) => cidr("aws.vpc_cidr", v)?,
        None => "10.42.0.0/16".parse().expect("valid"),
    };
    if !(16..=24).contains(&vpc_cidr.len) {
        let span = f.vpc_cidr.as_ref().map_or(0..0, |v| v.span());
        return o.err(
            span,
            "aws.vpc_cidr",
            "AWS allows VPC sizes /16 to /28; eshop needs room for two subnets: use /16 to /24",
        );
    }
    let subnet_cidrs = match &f.subnet_cidrs {
        Some(list) => {
            if list.get_ref().len() < 2 {
                return o.err(
                    list.span(),
                    "aws.subnet_cidrs",
                    "needs at least two subnets: the load balancer spans two availability zones",
                );
            }
            let mut out: Vec<Cidr> = Vec::new();
            for v in list.get_ref() {
                let c = cidr("aws.subnet_cidrs", v)?;
                if !vpc_cidr.contains(c) {
                    return o.err(
                        v.span(),
                        "aws.subnet_cidrs",
                        format!("{c} is not inside aws.vpc_cidr {vpc_cidr}"),
                    );
                }
                if c.len > 28 {
                    return o.err(v.span(), "aws.subnet_cidrs", "AWS subnets are /16 to /28");
                }
                if let Some(prev) = out.iter().find(|p| p.overlaps(c)) {
                    return o.err(v.span(), "aws.subnet_cidrs", format!("{c} overlaps {prev}"));
                }
                out.push(c);
            }
            out
        }
        // Two /24s at the start of the VPC's range.
        None => (1..=2)
            .map(|i| Cidr {
                addr: vpc_cidr.addr + (i << 8),
                len: 24,
            })
            .collect(),
    };
    let availability_zones = match &f.availability_zones {
        Some(list) => {
            let zones: Vec<String> = list.get_ref().iter().map(|z| z.get_ref().clone()).collect();
            if let Some(z) = list
                .get_ref()
                .iter()
                .find(|z| !z.get_ref().starts_with(&region) || z.get_ref().len() <= region.len())
            {
                return o.err(
                    z.span(),
                    "aws.availability_zones",
                    format!("{:?} is not a zone of {region}", z.get_ref()),
                );
            }
            if zones.len() != subnet_cidrs.len() {
                return o.err(
                    list.span(),
                    "aws.availability_zones",
                    format!(
                        "lists {} zone(s) for {} subnet(s): give one per subnet, or none to look them up",
                        zones.len(),
                        subnet_cidrs.len()
                    ),
                );
            }
            zones
        }
        None => Vec::new(),
    };
    let admin_cidr = match &f.admin_cidr {
        Some(v) if v.get_ref().is_empty() => None,
        Some(v) => Some(cidr("aws.admin_cidr", v)?),
        None => None,
    };
    let ssh_public_key = match &f.ssh_public_key {
        Some(p) if p.get_ref().trim().is_empty() => {
            return o.err(
                p.span(),
                "aws.ssh_public_key",
                "must be a path to a public key",
            )
        }
        Some(p) => expand_home(p.get_ref()),
        None => expand_home("~/.ssh/id_ed25519.pub"),
    };
    let ami = match &f.ami {
        Some(a) if a.get_ref().is_empty() => None,
        Some(a) => {
            let ok = a
                .get_ref()
                .strip_prefix("ami-")
                .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()));
            if !ok {
                return o.err(a.span(), "aws.ami", "must be an AMI id like ami-0abc1234");
            }
            Some(a.get_ref().clone())
        }
        None => None,
    };
    let ami_owner = strings(o, "aws.ami_owner", &f.ami_owner, UBUNTU_OWNER, |s| {
        (!s.is_empty())
            .then_some(())
            .ok_or_else(|| "must be an account id or alias such as amazon".into())
    })?;
    let ami_name = strings(o, "aws.ami_name", &f.ami_name, UBUNTU_NAME, |s| {
        (!s.is_empty())
            .then_some(())
            .ok_or_else(|| "must be an image name pattern".into())
    })?;
    let control_plane_type = strings(
        o,
        "aws.control_plane_type",
        &f.control_plane_type,
        "t3.medium",
        instance_type,
    )?;
    let worker_type = strings(
        o,
        "aws.worker_type",
        &f.worker_type,
        "t3.medium",
        instance_type,
    )?;
    let root_volume_gib = int(o, "aws.root_volume_gib", &f.root_volume_gib, 20, 8..=1024)? as i32;
    let min_size = int(o, "aws.min_size", &f.min_size, 1, 0..=100)? as i32;
    let max_size = int(o, "aws.max_size", &f.max_size, 4, 1..=100)? as i32;
    let desired_capacity = int(
        o,
        "aws.desired_capacity",
        &f.desired_capacity,
        i64::from(min_size.max(2).min(max_size)),
        0..=100,
    )? as i32;
    if min_size > max_size {
        let span = f.min_size.as_ref().map_or(0..0, |v| v.span());
        return o.err(
            span,
            "aws.min_size",
            format!("{min_size} is larger than aws.max_size {max_size}"),
        );
    }
    if desired_capacity < min_size || desired_capacity > max_size {
        let span = f.desired_capacity.as_ref().map_or(0..0, |v| v.span());
        return o.err(
            span,
            "aws.desired_capacity",
            format!(
                "{desired_capacity} is outside aws.min_size..aws.max_size ({min_size}..{max_size})"
            ),
        );
    }
    let cpu_target_percent = int(
        o,
        "aws.cpu_target_percent",
        &f.cpu_target_percent,
        50,
        10..=90,
    )? as f64;
    let node_port = int(o, "aws.node_port", &f.node_port, 30080, 30000..=32767)? as i32;
    Ok(Aws {
        region,
        endpoint,
        vpc_cidr,
        subnet_cidrs,
        availability_zones,
        admin_cidr,
        ssh_public_key,
        ami,
        ami_owner,
        ami_name,
        control_plane_type,
        worker_type,
        root_volume_gib,
        min_size,
        desired_capacity,
        max_size,
        cpu_target_percent,
        node_port,
    })
}

pub(super) fn schedule(o: &Origin, f: &FileSchedule) -> Result<Schedule, ConfigError> {
    let time =
        |key: &str, v: &Spanned<String>| hh_mm(v.get_ref()).or_else(|m| o.err(v.span(), key, m));
    let stop_at = match &f.stop_at {
        Some(v) => time("schedule.stop_at", v)?,
        None => (18, 0),
    };
    let start_at = match &f.start_at {
        Some(v) if v.get_ref().is_empty() => None,
        Some(v) => Some(time("schedule.start_at", v)?),
        None => None,
    };
    let time_zone = match &f.time_zone {
        Some(v) => match jiff::tz::TimeZone::get(v.get_ref()) {
            Ok(_) => v.get_ref().clone(),
            Err(_) => {
                return o.err(
                    v.span(),
                    "schedule.time_zone",
                    format!(
                        "{:?} is not an IANA time zone like Europe/Paris or UTC",
                        v.get_ref()
                    ),
                )
            }
        },
        None => "UTC".to_owned(),
    };
    Ok(Schedule {
        stop_at,
        start_at,
        time_zone,
    })
}

fn expand_home(p: &str) -> std::path::PathBuf {
    match p.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME")
            .map(std::path::PathBuf::from)
            .unwrap_or_default()
            .join(rest),
        None => std::path::PathBuf::from(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_contain_and_overlap() {
        let vpc: Cidr = "10.42.0.0/16".parse().unwrap();
        let a: Cidr = "10.42.1.0/24".parse().unwrap();
        let b: Cidr = "10.42.1.128/25".parse().unwrap();
        assert!(vpc.contains(a) && a.overlaps(b) && !a.overlaps("10.42.2.0/24".parse().unwrap()));
        assert!(!vpc.contains("10.43.0.0/24".parse().unwrap()));
        assert!("10.42.1.1/24"
            .parse::<Cidr>()
            .unwrap_err()
            .contains("host bits"));
        assert!("10.42.0.0/33".parse::<Cidr>().is_err());
        assert_eq!(a.to_string(), "10.42.1.0/24");
    }
}
