process TRAIN {
    tag "${meta.id}"
    label 'process_gpu'

    input:
    // every file of the training rows, each in its own numbered folder, and the samplesheet naming them
    // there (label convention and brain mask per row: train reads them as `train --samplesheet` does)
    tuple val(meta), path(files, stageAs: 'data/f?????/*'), path(samplesheet)

    output:
    tuple val(meta), path("${task.ext.prefix ?: meta.id}", type: 'dir'), emit: model
    tuple val(meta), path("${task.ext.prefix ?: meta.id}/model.json"), emit: card
    tuple val(meta), path("${task.ext.prefix ?: meta.id}/train_log.csv"), emit: log
    tuple val("${task.process}"), val("gliocascade"), eval("gliocascade --version | sed 's/.* //'"), topic: versions, emit: versions_gliocascade

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    gliocascade train --samplesheet ${samplesheet} --out ${prefix} --fold ${meta.fold} --folds ${meta.folds} --seed ${meta.seed} ${args}
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    mkdir -p ${prefix}/snapshots
    echo '{"split": {"train": [], "val": []}}' > ${prefix}/model.json
    touch ${prefix}/checkpoint.pt ${prefix}/train_log.csv
    """
}
