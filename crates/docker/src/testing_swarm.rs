//! TEMPORARY stand-in until the harness lands.
pub struct TestSwarm(String);
impl TestSwarm {
    pub fn single_node() -> Result<TestSwarm, String> {
        let out =
            std::process::Command::new("docker").args(["info", "--format", "{{.Swarm.NodeID}}"]).output().unwrap();
        Ok(TestSwarm(String::from_utf8(out.stdout).unwrap().trim().to_string()))
    }
    pub fn manager_node(&self) -> &str {
        &self.0
    }
}
