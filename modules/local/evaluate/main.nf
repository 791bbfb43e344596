process EVALUATE {
    tag "${meta.id}"
    label 'process_single'

    input:
    // the final labels in BraTS space, the same on the native T1Gd grid ([] for BraTS rows), the reference ([] if none)
    tuple val(meta), path(seg, stageAs: 'pred/*'), path(seg_native, stageAs: 'pred_native/*'), path(gt, stageAs: 'reference/*')

    output:
    // a refused case (bad input) writes refusal.csv instead of its outputs (GLIOCASCADE_REFUSAL_RECORD)
    tuple val(meta), path("${task.ext.prefix ?: meta.id}_metrics.csv"), emit: metrics, optional: true
    tuple val(meta), path("provenance_evaluate.json"), emit: provenance, optional: true
    tuple val(meta), path("refusal.csv"), emit: refusal, optional: true
    tuple val("${task.process}"), val("gliocascade"), eval("gliocascade --version | sed 's/.* //'"), topic: versions, emit: versions_gliocascade

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}"
    def gt_arg = gt ? "--gt ${gt} --lesion-wise" : ''
    def pred_native_arg = seg_native ? "--pred-native ${seg_native}" : ''
    """
    gliocascade evaluate --pred ${seg} ${pred_native_arg} ${gt_arg} --case-id ${meta.id} --out ${prefix}_metrics.csv ${args}
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    echo "case_id" > ${prefix}_metrics.csv
    echo "${meta.id}" >> ${prefix}_metrics.csv
    touch provenance_evaluate.json
    """
}
