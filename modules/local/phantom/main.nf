process PHANTOM {
    tag "${meta.id}"
    label 'process_single'

    input:
    val meta

    output:
    tuple val(meta), path("${task.ext.prefix ?: meta.id}/*", type: 'dir'), emit: cases
    tuple val("${task.process}"), val("gliocascade"), eval("gliocascade --version | sed 's/.* //'"), topic: versions, emit: versions_gliocascade

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    gliocascade phantom --out ${prefix} --prefix ${prefix} --n ${meta.n} --seed ${meta.seed} ${args}
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    def first = prefix + String.format('%03d', meta.seed as int)
    """
    mkdir -p ${prefix}/${first}
    touch ${prefix}/${first}/${first}_{t1,t1ce,t2,flair,seg}.nii.gz
    """
}
