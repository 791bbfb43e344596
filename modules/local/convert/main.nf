process CONVERT {
    tag "${meta.id}"
    label 'process_low'
    container "${params.container}"

    input:
    tuple val(meta), path(dicom_dir, stageAs: 'dicom/*')

    output:
    tuple val(meta), path("${task.ext.prefix ?: meta.id}/${meta.id}_t1.nii.gz"), path("${task.ext.prefix ?: meta.id}/${meta.id}_t1ce.nii.gz"), path("${task.ext.prefix ?: meta.id}/${meta.id}_t2.nii.gz"), path("${task.ext.prefix ?: meta.id}/${meta.id}_flair.nii.gz"), emit: images
    tuple val(meta), path("${task.ext.prefix ?: meta.id}/series.csv"), emit: series
    tuple val("${task.process}"), val("gliocascade"), eval("gliocascade --version | sed 's/.* //'"), topic: versions, emit: versions_gliocascade

    script:
    def args = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    gliocascade convert --dicom ${dicom_dir} --out ${prefix} --case-id ${meta.id} ${args}
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    mkdir -p ${prefix}
    touch ${prefix}/${meta.id}_{t1,t1ce,t2,flair}.nii.gz ${prefix}/series.csv
    """
}
