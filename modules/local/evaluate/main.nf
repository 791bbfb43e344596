process EVALUATE {
    tag "${meta.id}"
    label 'process_single'
    container "${params.container}"

    input:
    tuple val(meta), path(seg, stageAs: 'pred/*'), path(gt, stageAs: 'reference/*')

    output:
    tuple val(meta), path("${task.ext.prefix ?: meta.id}_metrics.csv"), emit: metrics
    tuple val("${task.process}"), val("gliocascade"), eval("gliocascade --version | sed 's/.* //'"), topic: versions, emit: versions_gliocascade

    script:
    def args = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}"
    def gt_arg = gt ? "--gt ${gt}" : ''
    """
    gliocascade evaluate --pred ${seg} ${gt_arg} --case-id ${meta.id} --out ${prefix}_metrics.csv ${args}
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    echo "case_id" > ${prefix}_metrics.csv
    echo "${meta.id}" >> ${prefix}_metrics.csv
    """
}
