//! Keeps the README's code blocks identical to the compiled examples: a
//! block is marked by `<!-- file: NAME -->` on the line before its fence.

pub fn assert_block_matches(name: &str, source: &str) {
    let readme = include_str!("../../README.md");
    let marker = format!("<!-- file: {name} -->");
    let start = readme
        .find(&marker)
        .unwrap_or_else(|| panic!("README has no {marker}"));
    let after = &readme[start + marker.len()..];
    let fence_start = after.find("```").expect("a code fence follows the marker");
    let body_start = fence_start + after[fence_start..].find('\n').expect("fence line") + 1;
    let body_len = after[body_start..].find("\n```").expect("closing fence");
    let block = &after[body_start..body_start + body_len];
    assert_eq!(
        block.trim(),
        source.trim(),
        "README block for {name} differs from the file"
    );
}
